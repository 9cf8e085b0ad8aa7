// Package launcher carries gluebox's real program (cmd/gluebox-core, which itself embeds the
// helper bundle) compressed inside the small shipped `gluebox` binary, and extracts it once to
// <data-dir>/bin/core/<hash>/gluebox with appliance/bundle, as k3s does with its payload: one
// file to ship, well under the size it would have uncompressed, and a real file to run (so its
// pages are shared and not held in anonymous memory). Only cmd/gluebox imports it.
package launcher

import (
	_ "embed"
	"path/filepath"
	"strings"

	"github.com/gluebox/gluebox/appliance/bundle"
)

//go:embed payload/gluebox.tar.zst
var payload []byte

//go:embed payload/gluebox.sha256
var payloadSum string

// DataDir returns the data dir named by args (--data-dir X or --data-dir=X), else by
// GLUEBOX_DATA_DIR, else the default.
func DataDir(args []string, env func(string) string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--data-dir="); ok {
			return v
		}
		if a == "--data-dir" && i+1 < len(args) {
			return args[i+1]
		}
	}
	if v := env("GLUEBOX_DATA_DIR"); v != "" {
		return v
	}
	return "/var/lib/gluebox"
}

// Ensure extracts the program under root (unless already there) and returns its path.
func Ensure(root string) (string, error) {
	dir, err := bundle.Extract(root, payload, strings.TrimSpace(payloadSum))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir.Root, "gluebox"), nil
}
