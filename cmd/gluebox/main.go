// Command gluebox is the shipped binary: it extracts the compressed gluebox program it carries
// (once, to <data-dir>/bin/core/<hash>/) and runs it with the same arguments and name, so a
// `kubectl` symlink still runs the embedded kubectl.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/gluebox/gluebox/embed/launcher"
)

func main() {
	binRoot := filepath.Join(launcher.DataDir(os.Args[1:], os.Getenv), "bin", "core")
	if os.Geteuid() != 0 {
		// Commands that need no root (version, --help) still work from a user cache.
		if cache, err := os.UserCacheDir(); err == nil {
			binRoot = filepath.Join(cache, "gluebox", "core")
		}
	}
	exe, err := launcher.Ensure(binRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gluebox:", err)
		os.Exit(1)
	}
	if err := syscall.Exec(exe, os.Args, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "gluebox: cannot run %s: %v\n", exe, err)
		os.Exit(1)
	}
}
