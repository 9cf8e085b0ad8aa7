package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"golang.org/x/sys/unix"
)

// storageDriverName is the name distribution's configuration uses for fsDriver.
const storageDriverName = "gluebox-filesystem"

// Distribution builds its storage driver from a process-wide table of factories, by name: the
// only way to hand it a driver of our own. Registering is therefore the one piece of global
// state in this package, as it is for distribution's own drivers.
func init() { factory.Register(storageDriverName, fsDriverFactory{}) }

type fsDriverFactory struct{}

func (fsDriverFactory) Create(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	root, _ := params["rootdirectory"].(string)
	if root == "" {
		return nil, errors.New("registry: storage driver needs a rootdirectory")
	}
	return newFSDriver(root), nil
}

// fsDriver is distribution's filesystem driver with gluebox's write path; reading, listing and
// walking are distribution's.
//
// Writes stream to disk while an upload arrives (see fileWriter) rather than all at once when it
// ends, and a blob is committed by a rename, never a copy.
//
// What is on disk when a request returns, on a filesystem that honours fsync:
//
//   - A blob or manifest the registry answered 201 for: its data was fsync'd before it was
//     renamed into blobs/, and that rename (with every directory it created) was fsync'd before
//     the repository's link to it was written. Links and tags are written to a temporary file,
//     fsync'd, renamed into place, and their directory (and every directory created for them)
//     fsync'd. Distribution's own driver fsyncs no directory after a rename and only the last
//     one after a link, so a crash could keep a link to a blob whose name was lost.
//   - The bytes of an upload's PATCH, which are fsync'd before the 202. The upload's scratch
//     state (_uploads/<id>/startedat, the saved hash states) is written atomically but not
//     fsync'd: it is an optimisation that an unclean shutdown discards, see recoverUploads.
//
// An upload reaches blobs/ only by the rename that follows a successful check of its digest,
// so an interrupted upload leaves nothing but _uploads/<id>, which the upload purger removes.
type fsDriver struct {
	storagedriver.StorageDriver // distribution's filesystem driver, for everything not below
	root                        string
}

var _ storagedriver.StorageDriver = (*fsDriver)(nil)

func newFSDriver(root string) *fsDriver {
	return &fsDriver{
		StorageDriver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
		root:          root,
	}
}

func (d *fsDriver) fullPath(p string) string { return filepath.Join(d.root, p) }

// trashDir is where Delete moves upload directories to be removed in the background. It is on
// the same filesystem as the blobs, outside distribution's tree, and emptied at start.
func trashDir(root string) string { return filepath.Join(root, "gluebox", "trash") }

func (d *fsDriver) checkPath(p string) error {
	if !storagedriver.PathRegexp.MatchString(p) {
		return storagedriver.InvalidPathError{Path: p, DriverName: d.Name()}
	}
	return nil
}

// uploadState reports whether path is an upload's scratch state (_uploads/<id>/startedat,
// _uploads/<id>/hashstates/...) rather than its data.
func uploadState(path string) bool {
	_, rest, ok := strings.Cut(path, "/_uploads/")
	return ok && !strings.HasSuffix(rest, "/data")
}

// uploadDir reports whether path is an upload's directory, _uploads/<id>.
func uploadDir(path string) bool {
	_, rest, ok := strings.Cut(path, "/_uploads/")
	return ok && rest != "" && !strings.Contains(rest, "/")
}

// PutContent writes content to path atomically: a temporary file, fsync'd, renamed into place,
// then the directory and any directories created for it fsync'd. Upload scratch state skips
// the fsyncs.
func (d *fsDriver) PutContent(_ context.Context, path string, content []byte) error {
	if err := d.checkPath(path); err != nil {
		return err
	}
	durable := !uploadState(path)
	full := d.fullPath(path)
	dir := filepath.Dir(full)
	top, err := mkdirs(dir)
	if err != nil {
		return err
	}
	// Named by hand rather than with os.CreateTemp so the mode is distribution's: 0666 less
	// the umask.
	tmp := fmt.Sprintf("%s.%016x.tmp", full, rand.Uint64())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, full)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	return syncDirs(dir, top)
}

// Move renames sourcePath to destPath and makes the new name durable. Both are under one root,
// so it is a rename, never a copy.
func (d *fsDriver) Move(ctx context.Context, sourcePath, destPath string) error {
	if err := d.checkPath(destPath); err != nil {
		return err
	}
	dir := filepath.Dir(d.fullPath(destPath))
	top, err := mkdirs(dir)
	if err != nil {
		return err
	}
	if err := d.StorageDriver.Move(ctx, sourcePath, destPath); err != nil {
		return err
	}
	return syncDirs(dir, top)
}

// Delete removes path and everything under it. An upload's directory, which distribution
// deletes as the last step of committing the upload, is renamed into the trash and removed in
// the background: the rename is one operation, the removal one per file.
func (d *fsDriver) Delete(ctx context.Context, path string) error {
	if uploadDir(path) && d.checkPath(path) == nil {
		trash := trashDir(d.root)
		if err := os.MkdirAll(trash, 0o700); err == nil {
			dst := filepath.Join(trash, fmt.Sprintf("%016x", rand.Uint64()))
			err := os.Rename(d.fullPath(path), dst)
			if err == nil {
				go func() { _ = os.RemoveAll(dst) }() // leftovers go at the next start
				return nil
			}
			if errors.Is(err, fs.ErrNotExist) {
				return storagedriver.PathNotFoundError{Path: path, DriverName: d.Name()}
			}
		}
		// Anything else (another filesystem, say): delete in place.
	}
	return d.StorageDriver.Delete(ctx, path)
}

// Writer opens path for a streaming write; see fileWriter.
func (d *fsDriver) Writer(_ context.Context, path string, appendTo bool) (storagedriver.FileWriter, error) {
	if err := d.checkPath(path); err != nil {
		return nil, err
	}
	full := d.fullPath(path)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	var size int64
	if appendTo {
		size, err = f.Seek(0, io.SeekEnd)
	} else {
		err = f.Truncate(0)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return newFileWriter(f, size), nil
}

// mkdirs creates dir and its missing parents and returns the highest directory whose entries
// change: dir itself when it existed, else the nearest ancestor that did.
func mkdirs(dir string) (top string, err error) {
	top = dir
	for {
		if _, err := os.Stat(top); err == nil {
			break
		}
		parent := filepath.Dir(top)
		if parent == top {
			break
		}
		top = parent
	}
	return top, os.MkdirAll(dir, 0o777)
}

// syncDirs fsyncs dir and each of its parents up to and including top.
func syncDirs(dir, top string) error {
	for {
		if err := syncDir(dir); err != nil {
			return err
		}
		parent := filepath.Dir(dir)
		if dir == top || parent == dir || len(dir) <= len(top) {
			return nil
		}
		dir = parent
	}
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot sync directory: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}

// recoverUploads runs at start after an unclean shutdown and returns how many uploads in
// progress it found. Their scratch state was not fsync'd, so:
//
//   - It removes their saved hash states. The data a hash state describes may not have survived
//     as it was hashed, and trusting it could commit a blob whose bytes do not match its digest;
//     without one, distribution re-reads the upload's data from disk and checks its digest when
//     the upload is committed.
//   - It removes an upload whose start time was lost: distribution can neither resume it nor
//     tell the upload purger its age, so it would stay forever.
func recoverUploads(root string) (int, error) {
	repos := filepath.Join(root, "docker", "registry", "v2", "repositories")
	n := 0
	err := filepath.WalkDir(repos, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.IsDir() {
			return nil
		}
		switch e.Name() {
		case "_layers", "_manifests":
			return filepath.SkipDir
		case "_uploads":
			ids, err := os.ReadDir(path)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if !id.IsDir() {
					continue
				}
				n++
				dir := filepath.Join(path, id.Name())
				b, err := os.ReadFile(filepath.Join(dir, "startedat"))
				if _, perr := time.Parse(time.RFC3339, string(b)); err != nil || perr != nil {
					if err := os.RemoveAll(dir); err != nil {
						return err
					}
					continue
				}
				if err := os.RemoveAll(filepath.Join(dir, "hashstates")); err != nil {
					return err
				}
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("registry: cannot recover uploads under %s: %w", repos, err)
	}
	return n, nil
}

// Upload files are written out as they come (smaller writes are gathered to writeChunk), and
// made durable in the background every syncEvery bytes.
const (
	writeChunk = 1 << 20
	syncEvery  = 8 << 20
)

// fileWriter streams an upload's data to its file and keeps the disk busy while the upload is
// still arriving, instead of leaving every byte to one fsync after the last has come in (which
// is what distribution's writer does, so that a 50 MB layer waited ~40 ms for its fsync on the
// reference VM): every syncEvery bytes a goroutine of its own fdatasyncs the file, which writes
// back what has come so far and flushes the disk's cache while the rest arrives. Close and
// Commit then fsync as always, but only wait for the last few MiB. A failed background
// fdatasync fails them too: the kernel reports a write error once, to whichever sync comes
// first.
//
// Writes are done inline rather than handed to another goroutine: copying the bytes for such a
// handoff, or holding on to the caller's buffer, measured slower than the write itself.
//
// Write, Close, Cancel and Commit are called from one goroutine at a time, as distribution does.
type fileWriter struct {
	f       *os.File
	fd      int
	size    int64  // bytes accepted by Write
	opened  int64  // size when opened
	written int64  // bytes written to the file: size - len(buf)
	synced  int64  // offset up to which a background fdatasync has been asked for
	buf     []byte // gathered small writes
	err     error  // first write error; the writer is unusable after it

	syncReq  chan struct{} // to the sync goroutine; nil until it is started
	syncDone chan error    // its first error, once syncReq is closed

	closed, committed, cancelled bool
}

var _ storagedriver.FileWriter = (*fileWriter)(nil)

func newFileWriter(f *os.File, size int64) *fileWriter {
	return &fileWriter{f: f, fd: int(f.Fd()), size: size, opened: size, written: size, synced: size}
}

func (w *fileWriter) usable() error {
	switch {
	case w.closed:
		return errors.New("already closed")
	case w.committed:
		return errors.New("already committed")
	case w.cancelled:
		return errors.New("already cancelled")
	}
	return w.err
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if len(w.buf) == 0 && len(p) >= writeChunk {
		n, err := w.writeOut(p)
		w.size += int64(n)
		return n, err
	}
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, writeChunk)
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
		w.size += int64(k)
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush writes the gathered bytes to the file.
func (w *fileWriter) flush() error {
	if len(w.buf) > 0 && w.err == nil {
		_, _ = w.writeOut(w.buf)
		w.buf = w.buf[:0]
	}
	return w.err
}

func (w *fileWriter) writeOut(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if err != nil {
		w.err = err
		return n, err
	}
	if w.written-w.synced >= syncEvery {
		w.synced = w.written
		if w.syncReq == nil {
			w.syncReq, w.syncDone = make(chan struct{}, 1), make(chan error, 1)
			go w.syncLoop()
		}
		select {
		case w.syncReq <- struct{}{}:
		default: // one is pending already and will cover these bytes too
		}
	}
	return n, nil
}

// syncLoop fdatasyncs the file on request until syncReq is closed, then reports the first error.
func (w *fileWriter) syncLoop() {
	var err error
	for range w.syncReq {
		if err == nil {
			err = unix.Fdatasync(w.fd)
		}
	}
	w.syncDone <- err
}

// stopSync ends the sync goroutine, if any, and returns its error.
func (w *fileWriter) stopSync() error {
	if w.syncReq == nil {
		return nil
	}
	close(w.syncReq)
	err := <-w.syncDone
	w.syncReq = nil
	if err != nil {
		return fmt.Errorf("cannot sync %s: %w", w.f.Name(), err)
	}
	return nil
}

// sync writes out what is gathered, waits for the background sync and fsyncs the file.
func (w *fileWriter) sync() error {
	err := errors.Join(w.flush(), w.stopSync())
	if err == nil {
		err = w.f.Sync()
	}
	return err
}

func (w *fileWriter) Size() int64 { return w.size }

// Close writes out what is gathered and, if this writer added bytes, fsyncs them, so the upload
// can resume from them even after a crash; then it closes the file.
func (w *fileWriter) Close() error {
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	var err error
	if !w.committed && !w.cancelled && w.size != w.opened {
		err = w.sync()
	}
	return errors.Join(err, w.stopSync(), w.f.Close())
}

// Cancel closes and removes the file.
func (w *fileWriter) Cancel(context.Context) error {
	if w.closed {
		return errors.New("already closed")
	}
	w.cancelled, w.closed = true, true
	_ = w.stopSync()
	_ = w.f.Close()
	return os.Remove(w.f.Name())
}

// Commit writes out what is gathered and fsyncs the file.
func (w *fileWriter) Commit(context.Context) error {
	if err := w.usable(); err != nil {
		return err
	}
	if err := w.sync(); err != nil {
		w.err = err
		return err
	}
	w.committed = true
	return nil
}
