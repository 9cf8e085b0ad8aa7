//go:build tools

// Module buildkit pins BuildKit: the bundle's buildkitd is upstream's command, built from the
// module as it is, and ./cmd/buildkit-client is gluebox's BuildKit client (see its doc).
// `go mod tidy` is safe here (unlike in embed/tools).
//
// The Makefile's bundle target builds both (from embed/buildkit):
//
//	CGO_ENABLED=0 go build -trimpath -tags 'osusergo netgo' -ldflags '-s -w ...' \
//		-o ../.build/bin/ github.com/moby/buildkit/cmd/buildkitd ./cmd/buildkit-client
package tools

import (
	_ "github.com/moby/buildkit/cmd/buildkitd"
)
