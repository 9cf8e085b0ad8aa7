// Package bundle extracts the helper programs embedded in the gluebox binary to
// <data-dir>/bin/<hash>/ and points <data-dir>/bin/current at them. Extraction is atomic (temp
// dir, then rename) and serialized by a file lock, so concurrent starts and crashes mid-way never
// leave a half-written directory in use. The server, cleanup and check import it.
package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// Dir is an extracted bundle.
type Dir struct {
	// Root is <data-dir>/bin/<hash>.
	Root string
}

// Bin returns the path of the named helper program.
func (d Dir) Bin(name string) string { return filepath.Join(d.Root, "bin", name) }

// BinDir is the directory holding every helper program (CNI plugins included).
func (d Dir) BinDir() string { return filepath.Join(d.Root, "bin") }

// Image returns the path of a bundled image tarball, e.g. Image("pause").
func (d Dir) Image(name string) string { return filepath.Join(d.Root, "images", name+".tar") }

const completeMarker = ".complete"

// Extract makes sure the bundle with the given hex SHA-256 is extracted under binRoot
// (<data-dir>/bin) and returns it. data is the compressed bundle; its hash is checked before
// anything is written.
func Extract(binRoot string, data []byte, sum string) (Dir, error) {
	if len(sum) < 12 {
		return Dir{}, fmt.Errorf("bundle hash %q is too short: the binary was built without `make`", sum)
	}
	dir := Dir{Root: filepath.Join(binRoot, sum[:12])}
	if _, err := os.Stat(filepath.Join(dir.Root, completeMarker)); err == nil {
		return dir, pointCurrent(binRoot, sum[:12])
	}
	if err := os.MkdirAll(binRoot, 0o755); err != nil {
		return Dir{}, fmt.Errorf("cannot create %s: %w", binRoot, err)
	}
	unlock, err := lock(filepath.Join(binRoot, ".lock"))
	if err != nil {
		return Dir{}, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir.Root, completeMarker)); err == nil {
		return dir, pointCurrent(binRoot, sum[:12])
	}
	got := sha256.Sum256(data)
	if hex.EncodeToString(got[:]) != sum {
		return Dir{}, errors.New("the embedded bundle is corrupt (hash mismatch): reinstall gluebox")
	}
	tmp, err := os.MkdirTemp(binRoot, ".extract-")
	if err != nil {
		return Dir{}, fmt.Errorf("cannot create temp dir in %s: %w", binRoot, err)
	}
	defer os.RemoveAll(tmp)
	if err := untar(tmp, data); err != nil {
		return Dir{}, fmt.Errorf("cannot extract bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, completeMarker), []byte(sum+"\n"), 0o644); err != nil {
		return Dir{}, err
	}
	_ = os.RemoveAll(dir.Root) // an incomplete leftover from a crash
	if err := os.Rename(tmp, dir.Root); err != nil {
		return Dir{}, fmt.Errorf("cannot move bundle into place: %w", err)
	}
	if err := atomicfile.SyncDir(filepath.Dir(dir.Root)); err != nil {
		return Dir{}, err
	}
	return dir, pointCurrent(binRoot, sum[:12])
}

func untar(dst string, data []byte) error {
	zr, err := zstd.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return fmt.Errorf("bundle entry %q escapes the bundle dir", h.Name)
		}
		target := filepath.Join(dst, name)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
}

// pointCurrent flips <binRoot>/current to the given hash dir atomically.
func pointCurrent(binRoot, hash string) error {
	cur := filepath.Join(binRoot, "current")
	if target, err := os.Readlink(cur); err == nil && target == hash {
		return nil
	}
	return atomicfile.Symlink(hash, cur)
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot lock %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
