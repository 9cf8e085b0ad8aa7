package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
)

// pattern returns n bytes that differ from offset to offset, so misplaced bytes show.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4099)
	}
	return b
}

func readAll(t *testing.T, d storagedriver.StorageDriver, path string) []byte {
	t.Helper()
	b, err := d.GetContent(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFileWriter(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		writes []int // sizes of successive Write calls
	}{
		{"small writes are gathered", []int{1, 3000, writeChunk - 1, 2, 70000, 5}},
		{"large writes with background syncs", []int{writeChunk, 3 * writeChunk, 2*syncEvery + 12345, writeChunk / 2}},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFSDriver(t.TempDir())
			const path = "/docker/registry/v2/repositories/r/_uploads/u/data"
			total := 0
			for _, n := range tc.writes {
				total += n
			}
			want := pattern(total)

			// Write the first half, close (as a PATCH does), reopen for append and finish.
			half := len(tc.writes) / 2
			off := 0
			for i, chunks := range [][]int{tc.writes[:half], tc.writes[half:]} {
				w, err := d.Writer(ctx, path, i > 0)
				if err != nil {
					t.Fatal(err)
				}
				if w.Size() != int64(off) {
					t.Fatalf("reopened at size %d, want %d", w.Size(), off)
				}
				for _, n := range chunks {
					if m, err := w.Write(want[off : off+n]); err != nil || m != n {
						t.Fatalf("Write(%d) = %d, %v", n, m, err)
					}
					off += n
				}
				if w.Size() != int64(off) {
					t.Fatalf("Size() = %d, want %d", w.Size(), off)
				}
				if i == 0 {
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write([]byte("x")); err == nil {
					t.Fatal("Write after Commit succeeded")
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if got := readAll(t, d, path); !bytes.Equal(got, want) {
				t.Fatalf("file holds %d bytes that differ from the %d written", len(got), len(want))
			}
		})
	}
}

func TestFileWriterCancel(t *testing.T) {
	ctx := context.Background()
	d := newFSDriver(t.TempDir())
	const path = "/docker/registry/v2/repositories/r/_uploads/u/data"
	w, err := d.Writer(ctx, path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(pattern(syncEvery + writeChunk)); err != nil {
		t.Fatal(err)
	}
	if err := w.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, path); !errors.As(err, new(storagedriver.PathNotFoundError)) {
		t.Fatalf("Stat after Cancel: %v, want PathNotFoundError", err)
	}
}

// A blob is committed by renaming its upload, not by copying it.
func TestMoveIsARename(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := newFSDriver(root)
	const from, to = "/docker/registry/v2/repositories/r/_uploads/u/data", "/docker/registry/v2/blobs/sha256/ab/abcd/data"
	w, err := d.Writer(ctx, from, false)
	if err != nil {
		t.Fatal(err)
	}
	data := pattern(3 * writeChunk)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	before, err := os.Stat(filepath.Join(root, from))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Move(ctx, from, to); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(filepath.Join(root, to))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("Move copied the file instead of renaming it")
	}
	if _, err := os.Stat(filepath.Join(root, from)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source still there after Move: %v", err)
	}
	if !bytes.Equal(readAll(t, d, to), data) {
		t.Error("moved blob differs")
	}
}

func TestPutContent(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := newFSDriver(root)
	for _, path := range []string{
		"/docker/registry/v2/repositories/a/b/_layers/sha256/abcd/link",       // durable, new directories
		"/docker/registry/v2/repositories/a/b/_uploads/u/hashstates/sha256/0", // upload scratch state
	} {
		for _, content := range []string{"first", "second, longer than the first"} {
			if err := d.PutContent(ctx, path, []byte(content)); err != nil {
				t.Fatal(err)
			}
			if got := string(readAll(t, d, path)); got != content {
				t.Errorf("%s holds %q, want %q", path, got, content)
			}
		}
	}
	var leftovers []string
	filepath.WalkDir(root, func(p string, _ os.DirEntry, _ error) error {
		if strings.HasSuffix(p, ".tmp") {
			leftovers = append(leftovers, p)
		}
		return nil
	})
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	if err := d.PutContent(ctx, "/bad path", nil); !errors.As(err, new(storagedriver.InvalidPathError)) {
		t.Errorf("PutContent of an invalid path: %v, want InvalidPathError", err)
	}
}

func TestDeleteUploadDir(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := newFSDriver(root)
	const dir = "/docker/registry/v2/repositories/r/_uploads/0195d1c3-aaaa-7bbb-8ccc-123456789abc"
	for _, f := range []string{"/startedat", "/hashstates/sha256/0", "/data"} {
		if err := d.PutContent(ctx, dir+f, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Delete(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, dir); !errors.As(err, new(storagedriver.PathNotFoundError)) {
		t.Fatalf("upload directory still there: %v", err)
	}
	if err := d.Delete(ctx, dir); !errors.As(err, new(storagedriver.PathNotFoundError)) {
		t.Fatalf("second Delete: %v, want PathNotFoundError", err)
	}
	// The trash empties itself in the background.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, _ := os.ReadDir(trashDir(root))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trash not emptied: %d entries", len(left))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecoverUploads(t *testing.T) {
	root := t.TempDir()
	repos := filepath.Join(root, "docker", "registry", "v2", "repositories")
	started := time.Now().UTC().Format(time.RFC3339)
	files := map[string]string{
		"a/_uploads/u1/hashstates/sha256/0":           "x",
		"a/_uploads/u1/hashstates/sha256/1048576":     "x",
		"a/_uploads/u1/data":                          "x",
		"a/_uploads/u1/startedat":                     started,
		"nested/name/_uploads/u2/hashstates/sha256/0": "x",
		"nested/name/_uploads/u2/startedat":           started,
		"nested/name/_uploads/u3/data":                "x", // start time lost
		"nested/name/_uploads/u4/data":                "x",
		"nested/name/_uploads/u4/startedat":           "", // written, not synced
		"nested/name/_layers/sha256/abcd/link":        "x",
	}
	for f, content := range files {
		p := filepath.Join(repos, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := recoverUploads(root)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("found %d uploads, want 4", n)
	}
	var left []string
	filepath.WalkDir(repos, func(p string, e os.DirEntry, _ error) error {
		if !e.IsDir() {
			rel, _ := filepath.Rel(repos, p)
			left = append(left, filepath.ToSlash(rel))
		}
		return nil
	})
	want := []string{
		"a/_uploads/u1/data",
		"a/_uploads/u1/startedat",
		"nested/name/_layers/sha256/abcd/link",
		"nested/name/_uploads/u2/startedat",
	}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("files left (-want +got):\n%s", diff)
	}
	if n, err := recoverUploads(t.TempDir()); n != 0 || err != nil {
		t.Errorf("empty storage: %d, %v", n, err)
	}
}

// startRegistry runs a registry on dir until the returned stop is called, which shuts it down
// and closes it as the server does on exit.
func startRegistry(t *testing.T, dir string) (*testRegistry, func()) {
	t.Helper()
	r, err := New(Config{Dir: dir, Addr: "127.0.0.1:0", GCInterval: -1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	regReady := make(chan error, 1)
	go func() { regReady <- r.WaitReady(ctx) }()
	select {
	case err := <-regReady:
		if err != nil {
			t.Fatalf("registry not ready: %v", err)
		}
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(stop)
	return &testRegistry{Registry: r, host: r.Addr(), dir: dir}, stop
}

// onHost points an upload location at another run's address.
func onHost(t *testing.T, loc, host string) string {
	t.Helper()
	u := mustURL(t, loc)
	u.Host = host
	return u.String()
}

// After a crash, an upload in progress may be resumed and committed, but only against the bytes
// that are really on disk: its saved hash states are dropped, so distribution re-reads the data
// and a blob whose bytes do not match the client's digest is refused rather than committed.
func TestUncleanShutdownReverifiesUploads(t *testing.T) {
	dir := t.TempDir()
	data := pattern(3*writeChunk + 5)
	d := digest.FromBytes(data)
	uploads := filepath.Join(dir, "docker", "registry", "v2", "repositories", "crash", "blob", "_uploads")
	hashStates := func() []string {
		m, _ := filepath.Glob(filepath.Join(uploads, "*", "hashstates", "sha256", "*"))
		return m
	}

	// First run: two uploads receive all their bytes; then the machine dies. (Close runs so
	// the test leaks nothing, and the marker it removes is put back: the same on-disk state as
	// a registry that never got to close.)
	reg, stop := startRegistry(t, dir)
	var locs []string
	for range 2 {
		locs = append(locs, patchChunk(t, startUpload(t, reg, "crash/blob"), data, 0))
	}
	stop()
	if len(hashStates()) == 0 {
		t.Fatal("no saved hash states after the first run; the test would prove nothing")
	}
	if err := os.WriteFile(filepath.Join(dir, "gluebox", "open"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// What survived the crash is not what was hashed.
	damaged := bytes.Clone(data)
	copy(damaged[writeChunk:], bytes.Repeat([]byte{0}, 4096))
	files, _ := filepath.Glob(filepath.Join(uploads, "*", "data"))
	if len(files) != 2 {
		t.Fatalf("found %d upload data files, want 2", len(files))
	}
	for _, f := range files {
		if err := os.WriteFile(f, damaged, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	reg, _ = startRegistry(t, dir)
	if hs := hashStates(); len(hs) != 0 {
		t.Fatalf("hash states kept after an unclean shutdown: %v", hs)
	}
	// Committing under the digest of the bytes sent fails, and leaves no blob behind...
	putDone(t, onHost(t, locs[0], reg.host), d, nil, http.StatusBadRequest)
	resp := do(t, mustReq(t, http.MethodHead, reg.url("/v2/crash/blob/blobs/"+d.String()), nil))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of the refused blob: %d, want 404", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "docker", "registry", "v2", "blobs", "sha256", d.Encoded()[:2], d.Encoded())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused blob is in blobs/: %v", err)
	}
	// ...while the digest of what is on disk is accepted: the commit checked the disk.
	dd := digest.FromBytes(damaged)
	putDone(t, onHost(t, locs[1], reg.host), dd, nil, http.StatusCreated)
	body, _ := io.ReadAll(get(t, reg.url("/v2/crash/blob/blobs/"+dd.String())).Body)
	if !bytes.Equal(body, damaged) {
		t.Fatal("committed blob differs from its upload")
	}
}

// After a clean restart an upload keeps its saved hash states and completes without re-reading
// its data.
func TestCleanRestartKeepsUploads(t *testing.T) {
	dir := t.TempDir()
	data := pattern(2*writeChunk + 3)
	d := digest.FromBytes(data)

	reg, stop := startRegistry(t, dir)
	loc := patchChunk(t, startUpload(t, reg, "calm/blob"), data[:writeChunk], 0)
	stop()

	reg, _ = startRegistry(t, dir)
	hs, _ := filepath.Glob(filepath.Join(dir, "docker", "registry", "v2", "repositories", "calm", "blob", "_uploads", "*", "hashstates", "sha256", "*"))
	if len(hs) == 0 {
		t.Fatal("hash states dropped after a clean shutdown")
	}
	loc = patchChunk(t, onHost(t, loc, reg.host), data[writeChunk:], writeChunk)
	putDone(t, loc, d, nil, http.StatusCreated)
	body, _ := io.ReadAll(get(t, reg.url("/v2/calm/blob/blobs/"+d.String())).Body)
	if !bytes.Equal(body, data) {
		t.Fatal("blob corrupt after a resumed upload")
	}
}
