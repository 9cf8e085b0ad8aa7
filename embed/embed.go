// Package embed carries the helper-program bundle inside the gluebox binary. `make` builds the
// bundle (see mkbundle and the Makefile) before compiling gluebox; appliance/bundle extracts it.
package embed

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

//go:embed bundle/bundle.tar.zst
var bundle []byte

//go:embed bundle/bundle.sha256
var bundleSum string

//go:embed bundle/VERSIONS
var versions string

// Versions lists the bundled programs as "name version" lines.
func Versions() string { return versions }

// Bundle returns the zstd-compressed tar of helper programs and images. The bytes are part of
// the executable's data segment and must not be written to.
func Bundle() []byte { return bundle }

// BundleSHA256 returns the hex SHA-256 of Bundle, computed when it was built.
func BundleSHA256() string { return strings.TrimSpace(bundleSum) }

// ReleaseBundle gives back the memory that reading Bundle mapped into the process.
//
// The bundle (~70 MB) is read once, when a data dir gets its helper programs, and never again,
// but every page of it that was read stays mapped and counts in the server's resident memory
// for as long as it runs. The bundle lives in the executable's private file mapping and is
// never written, so MADV_DONTNEED only drops those mappings: the bytes stay in the file (and
// in the page cache while the kernel keeps them), and reading Bundle again maps them back in
// unchanged. Only whole pages inside the bundle are released; the first and last page may be
// shared with other variables, whose contents DONTNEED would reset, so they are left alone.
func ReleaseBundle() error {
	lo, hi := wholePages(uintptr(unsafe.Pointer(unsafe.SliceData(bundle))), len(bundle), os.Getpagesize())
	if lo == hi {
		return nil
	}
	pages := bundle[lo:hi]
	if err := unix.Madvise(pages, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("cannot release the bundle's %d MB of memory: %w", len(pages)>>20, err)
	}
	return nil
}

// wholePages returns the offsets [lo, hi) of the whole pages inside n bytes at address start.
func wholePages(start uintptr, n, pageSize int) (lo, hi int) {
	page := uintptr(pageSize)
	first := (start + page - 1) &^ (page - 1)
	last := (start + uintptr(n)) &^ (page - 1)
	if last <= first {
		return 0, 0
	}
	return int(first - start), int(last - start)
}
