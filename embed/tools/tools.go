//go:build tools

// This file records the upstream commands built into the bundle. Do not run `go mod tidy` here:
// main packages (runc) cannot be imported, so tidy would drop their dependencies; add a bundled
// program with `go get <module>/<cmd>@<version>` instead.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
	_ "github.com/containernetworking/plugins/plugins/meta/portmap"
	_ "github.com/opencontainers/runc/libcontainer"
)
