// Command gluebox-core is the whole platform in one program; the shipped `gluebox` binary carries
// it compressed and runs it (see cmd/gluebox). It dispatches on the name it was called
// by (a `kubectl` symlink runs the embedded kubectl) and otherwise runs the gluebox CLI.
package main

import (
	"os"
	"path/filepath"

	"github.com/gluebox/gluebox/appliance/cli"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		os.Exit(cli.Kubectl(os.Args[1:]))
	default:
		os.Exit(cli.Main(os.Args[1:]))
	}
}
