// Package node runs the worker side of a gluebox server: containerd (with the runc shim) as a
// supervised child process, the kubelet and kube-proxy in-process, the CNI network
// configuration (bridge, host-local, portmap, loopback) and the import of the node's own pause
// image. Each part is a supervise.Component. Only the server imports it.
package node
