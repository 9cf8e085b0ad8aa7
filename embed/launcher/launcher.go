// Package launcher carries gluebox's real program (cmd/gluebox-core, which itself embeds the
// helper bundle) zstd-compressed inside the small shipped `gluebox` binary, and extracts it once
// to <data-dir>/bin/core-<hash>/gluebox, as k3s does with its payload: one file to ship, well
// under the size it would have uncompressed, and a real file to run (so its pages are shared
// and not held in anonymous memory). Only cmd/gluebox imports it.
package launcher

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

//go:embed payload/gluebox.zst
var payload []byte

//go:embed payload/gluebox.sha256
var payloadSum string

// DataDir returns the data dir named by args (--data-dir X or --data-dir=X), else by
// GLUEBOX_DATA_DIR, else the default.
func DataDir(args []string) string {
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
	if v := os.Getenv("GLUEBOX_DATA_DIR"); v != "" {
		return v
	}
	return "/var/lib/gluebox"
}

// Ensure extracts the payload under binRoot (unless already there) and returns the path of
// the program. Extraction goes to a temp file that is verified, then renamed into place.
func Ensure(binRoot string) (string, error) {
	sum := strings.TrimSpace(payloadSum)
	if len(sum) < 12 {
		return "", errors.New("this gluebox binary was built without its payload: build it with `make`")
	}
	dir := filepath.Join(binRoot, "core-"+sum[:12])
	exe := filepath.Join(dir, "gluebox")
	if st, err := os.Stat(exe); err == nil && st.Mode().IsRegular() {
		return exe, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cannot create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(exe); err == nil {
		return exe, nil
	}
	zr, err := zstd.NewReader(bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	defer zr.Close()
	tmp, err := os.CreateTemp(dir, ".gluebox-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), zr); err != nil {
		tmp.Close()
		return "", fmt.Errorf("cannot extract gluebox to %s: %w", dir, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		tmp.Close()
		return "", errors.New("the gluebox payload is corrupt (hash mismatch): reinstall gluebox")
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), exe); err != nil {
		return "", err
	}
	return exe, nil
}
