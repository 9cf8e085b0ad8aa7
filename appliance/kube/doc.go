// Package kube runs the Kubernetes control plane of a gluebox server in-process: the kine
// datastore, kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes,
// each called through its exported Run function with gluebox's own context (the upstream cobra
// commands install process-wide signal handlers, so they are not used). It also issues the
// cluster's certificates and kubeconfigs. Each part is a supervise.Component: Run returns nil
// when its context ends, WaitReady polls the part's health endpoint. Only the server imports it.
package kube
