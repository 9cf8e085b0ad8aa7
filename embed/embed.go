// Package embed carries the helper-program bundle inside the gluebox binary. `make` builds the
// bundle (see mkbundle and the Makefile) before compiling gluebox; appliance/bundle extracts it.
package embed

import (
	_ "embed"
	"strings"
)

//go:embed bundle/bundle.tar.zst
var bundle []byte

//go:embed bundle/bundle.sha256
var bundleSum string

//go:embed bundle/VERSIONS
var versions string

// Versions lists the bundled programs as "name version" lines.
func Versions() string { return versions }

// Bundle returns the zstd-compressed tar of helper programs and images.
func Bundle() []byte { return bundle }

// BundleSHA256 returns the hex SHA-256 of Bundle, computed when it was built.
func BundleSHA256() string { return strings.TrimSpace(bundleSum) }
