// Package atomicfile is the one way gluebox replaces a file on disk: the new content goes to a
// temporary file beside the target, is fsync'd, renamed over the target, and then the directory
// is fsync'd so the rename itself survives a power cut. A reader (or a crash) sees either the old
// file or the whole new one, never half of either.
//
// It is built on github.com/google/renameio/v2, which does the temporary file, its fsync and the
// rename but leaves the directory unsynced; this package adds that last step and keeps the
// temporary file in the target's own directory (renameio would otherwise probe os.TempDir on
// every call). It has no state and no lifecycle; any package may import it.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// WriteFile replaces path with data, created with exactly perm (the umask does not apply), the
// way os.WriteFile would if it could not be interrupted halfway. The directory must exist.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write replaces path with whatever write writes, for content that is streamed (an encoder, a
// copy) rather than held in memory. If write returns an error the old file stays as it was and
// the temporary file is removed. The new file gets exactly perm; the directory must exist.
func Write(path string, perm fs.FileMode, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(dir), renameio.WithStaticPermissions(perm))
	if err != nil {
		return fmt.Errorf("cannot create a temporary file for %s: %w", path, err)
	}
	// A no-op once CloseAtomicallyReplace succeeded; otherwise it removes the temporary file.
	// Its error is not interesting next to the one that got us here.
	defer func() { _ = f.Cleanup() }()
	if err := write(f); err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("cannot replace %s: %w", path, err)
	}
	return SyncDir(dir)
}

// Symlink points path at target atomically (a new link renamed over the old one), then fsyncs
// the directory.
func Symlink(target, path string) error {
	if err := renameio.Symlink(target, path); err != nil {
		return fmt.Errorf("cannot link %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so that entries created, renamed or removed in it are durable. Use
// it after an os.Rename that this package cannot do for you (a whole directory moved into place).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}
