package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newTestStore opens a store in a fresh dir and closes it at the end of the test.
func newTestStore(t *testing.T, opts StoreOptions) *Store {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "secrets")
	}
	if opts.ScryptWorkFactor == 0 {
		opts.ScryptWorkFactor = 10
	}
	st, err := Open(opts, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func mustSet(t *testing.T, st *Store, path string, kv ...string) uint64 {
	t.Helper()
	v, err := st.Set(context.Background(), path, kvs(kv...), "test")
	if err != nil {
		t.Fatalf("Set %s: %v", path, err)
	}
	return v
}

func kvs(kv ...string) map[string][]byte {
	m := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	return m
}

func mustGet(t *testing.T, st *Store, path string, version uint64) map[string]string {
	t.Helper()
	sec, err := st.Get(context.Background(), path, version)
	if err != nil {
		t.Fatalf("Get %s@%d: %v", path, version, err)
	}
	out := map[string]string{}
	for k, v := range sec.Values {
		out[k] = string(v)
	}
	return out
}

func TestSetGetRoundTrip(t *testing.T) {
	big := strings.Repeat("x", MaxValueSize)
	tests := []struct {
		name   string
		values map[string][]byte
	}{
		{"one key", kvs("DATABASE_URL", "postgres://u:p@db/app")},
		{"many keys", kvs("A", "1", "B", "2", "c.d-e_f", "3")},
		{"empty value", kvs("EMPTY", "")},
		{"binary value", map[string][]byte{"BIN": {0, 1, 2, 0xff, 0xfe}}},
		{"multi-line value", kvs("PEM", "-----BEGIN KEY-----\nabc\n-----END KEY-----\n")},
		{"exactly 1 MiB", kvs("BIG", big)},
	}
	st := newTestStore(t, StoreOptions{})
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("secret/app-%d", i)
			if _, err := st.Set(ctx, path, tt.values, "alice"); err != nil {
				t.Fatal(err)
			}
			sec, err := st.Get(ctx, path, 0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.values, sec.Values); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			if sec.By != "alice" || sec.Version != 1 || sec.Created.IsZero() {
				t.Errorf("metadata = %+v", sec)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	st := newTestStore(t, StoreOptions{})
	ctx := context.Background()
	tests := []struct {
		name   string
		path   string
		values map[string][]byte
		want   string
	}{
		{"empty path", "", kvs("A", "1"), "secret path is empty"},
		{"no prefix", "myapp", kvs("A", "1"), `does not start with "secret/"`},
		{"trailing slash", "secret/app/", kvs("A", "1"), "empty segment"},
		{"dot dot", "secret/../x", kvs("A", "1"), `".." segment`},
		{"space in path", "secret/my app", kvs("A", "1"), "character ' '"},
		{"bad key", "secret/app", kvs("A B", "1"), `key "A B" in secret/app has the character ' '`},
		{"empty key", "secret/app", kvs("", "1"), "key name is empty"},
		{"no keys", "secret/app", map[string][]byte{}, "no keys given"},
		{"too big", "secret/app", kvs("BIG", strings.Repeat("x", MaxValueSize+1)), "the limit is 1048576 (1 MiB)"},
		{"long path", "secret/" + strings.Repeat("a", 300), kvs("A", "1"), "the limit is 256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := st.Set(ctx, tt.path, tt.values, "t")
			var in *InputError
			if !errors.As(err, &in) {
				t.Fatalf("Set error = %v, want an InputError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if n, _ := st.Count(); n != 0 {
		t.Errorf("bad input stored %d paths", n)
	}
}

func TestVersionsHistoryRollback(t *testing.T) {
	st := newTestStore(t, StoreOptions{KeepVersions: 5})
	ctx := context.Background()
	for i := 1; i <= 12; i++ {
		mustSet(t, st, "secret/app", "TOKEN", fmt.Sprintf("t%d", i))
	}
	mustSet(t, st, "secret/app", "OTHER", "o") // version 13
	hist, err := st.History(ctx, "secret/app")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, h := range hist {
		got = append(got, h.Version)
	}
	if diff := cmp.Diff([]uint64{13, 12, 11, 10, 9}, got); diff != "" {
		t.Errorf("kept versions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"OTHER"}, hist[0].Changed); diff != "" {
		t.Errorf("changed keys of v13 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"TOKEN": "t10"}, mustGet(t, st, "secret/app", 10)); diff != "" {
		t.Errorf("version 10 (-want +got):\n%s", diff)
	}
	v, err := st.Rollback(ctx, "secret/app", 10, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if v != 14 {
		t.Errorf("rollback made version %d, want 14", v)
	}
	if diff := cmp.Diff(map[string]string{"TOKEN": "t10"}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("after rollback (-want +got):\n%s", diff)
	}
	if _, err := st.Rollback(ctx, "secret/app", 3, "bob"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "kept: 10..14") {
		t.Errorf("rollback to a dropped version: %v", err)
	}
	if _, err := st.Get(ctx, "secret/nope", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing path: %v", err)
	}
}

func TestDeleteAndImport(t *testing.T) {
	st := newTestStore(t, StoreOptions{})
	ctx := context.Background()
	mustSet(t, st, "secret/app", "A", "1", "B", "2", "C", "3")
	if _, err := st.DeleteKeys(ctx, "secret/app", []string{"B"}, "t"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"A": "1", "C": "3"}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("after delete-keys (-want +got):\n%s", diff)
	}
	if _, err := st.DeleteKeys(ctx, "secret/app", []string{"B"}, "t"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a missing key: %v", err)
	}
	if _, err := st.Import(ctx, "secret/app", kvs("A", "9", "D", "4"), false, "t"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"A": "9", "C": "3", "D": "4"}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("after merge import (-want +got):\n%s", diff)
	}
	if _, err := st.Import(ctx, "secret/app", kvs("Z", "26"), true, "t"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"Z": "26"}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("after replace import (-want +got):\n%s", diff)
	}
	if err := st.DeletePath(ctx, "secret/app", "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "secret/app", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after DeletePath: %v", err)
	}
	if _, err := st.History(ctx, "secret/app"); !errors.Is(err, ErrNotFound) {
		t.Errorf("History after DeletePath: %v", err)
	}
	audit, err := st.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, e := range audit {
		ops = append(ops, e.Op)
	}
	if diff := cmp.Diff([]string{"delete", "import", "import", "delete-keys", "set"}, ops); diff != "" {
		t.Errorf("audit ops (-want +got):\n%s", diff)
	}
}

func TestListAndPersist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	st, err := Open(StoreOptions{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, st, "secret/a", "K", "1")
	mustSet(t, st, "secret/b/x", "K", "2")
	mustSet(t, st, "secret/b/y", "K", "3")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	st = newTestStore(t, StoreOptions{Dir: dir})
	list, err := st.List(context.Background(), "secret/b/")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Path != "secret/b/x" || list[1].Path != "secret/b/y" {
		t.Errorf("List = %+v", list)
	}
	if diff := cmp.Diff(map[string]string{"K": "1"}, mustGet(t, st, "secret/a", 0)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(st.IdentityPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file mode = %v, want 0600", fi.Mode().Perm())
	}
}

// plaintextMarkers are values that must never appear in any file the store writes.
var plaintextMarkers = []string{"PLAINTEXT-hunter2-4f1c9", "PLAINTEXT-rotated-88a0b"}

func assertNoPlaintext(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range plaintextMarkers {
			if bytes.Contains(b, []byte(m)) {
				t.Errorf("%s contains the plaintext value %q", f, m)
			}
		}
	}
}

func TestNoPlaintextInStoreFile(t *testing.T) {
	st := newTestStore(t, StoreOptions{})
	ctx := context.Background()
	for i := range 20 {
		mustSet(t, st, fmt.Sprintf("secret/app-%d", i), "PASSWORD", plaintextMarkers[0], "N", fmt.Sprint(i))
	}
	mustSet(t, st, "secret/app-0", "PASSWORD", plaintextMarkers[1])
	if _, err := st.Rollback(ctx, "secret/app-0", 1, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RotateKey(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	st.Close()
	files, _ := filepath.Glob(filepath.Join(st.opts.Dir, "*"))
	var regular []string
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
			regular = append(regular, f)
		}
	}
	assertNoPlaintext(t, regular...)
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) StoreOptions // prepares dir after a store with a value was created there
		want  string
	}{
		{"identity of another store", func(t *testing.T, dir string) StoreOptions {
			other := newTestStore(t, StoreOptions{})
			copyFile(t, other.IdentityPath(), filepath.Join(dir, identityFile))
			return StoreOptions{Dir: dir}
		}, "does not belong to this store"},
		{"missing identity", func(t *testing.T, dir string) StoreOptions {
			os.Remove(filepath.Join(dir, identityFile))
			return StoreOptions{Dir: dir}
		}, "is missing; the store is sealed for"},
		{"garbage identity", func(t *testing.T, dir string) StoreOptions {
			os.WriteFile(filepath.Join(dir, identityFile), []byte("not a key\n"), 0o600)
			return StoreOptions{Dir: dir}
		}, "does not hold an age X25519 identity"},
		{"corrupt store file", func(t *testing.T, dir string) StoreOptions {
			os.WriteFile(filepath.Join(dir, storeFile), bytes.Repeat([]byte("garbage!"), 4096), 0o600)
			return StoreOptions{Dir: dir}
		}, "corrupt"},
		{"truncated store file", func(t *testing.T, dir string) StoreOptions {
			os.Truncate(filepath.Join(dir, storeFile), 100)
			return StoreOptions{Dir: dir}
		}, "left untouched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			st, err := Open(StoreOptions{Dir: dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			mustSet(t, st, "secret/app", "K", "v")
			st.Close()
			opts := tt.setup(t, dir)
			before := snapshotDir(t, dir)
			_, err = Open(opts, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error = %v, want one containing %q", err, tt.want)
			}
			if diff := cmp.Diff(before, snapshotDir(t, dir)); diff != "" {
				t.Errorf("a failed Open changed files (-before +after):\n%s", diff)
			}
		})
	}
	_ = ctx
}

func TestLockedStore(t *testing.T) {
	st := newTestStore(t, StoreOptions{})
	start := time.Now()
	_, err := Open(StoreOptions{Dir: st.opts.Dir, LockTimeout: 200 * time.Millisecond}, nil)
	if err == nil || !strings.Contains(err.Error(), "another process holds its lock") {
		t.Fatalf("Open of a locked store: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Open of a locked store took %v", time.Since(start))
	}
	mustSet(t, st, "secret/still-works", "K", "v")
}

func TestPassphraseProtectedIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	st, err := Open(StoreOptions{Dir: dir, Passphrase: "correct horse", ScryptWorkFactor: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, st, "secret/app", "K", "v")
	st.Close()
	raw, _ := os.ReadFile(filepath.Join(dir, identityFile))
	if bytes.Contains(raw, []byte("AGE-SECRET-KEY")) {
		t.Error("passphrase-protected identity file holds the key in plain text")
	}
	for _, tt := range []struct{ pass, want string }{
		{"", "protected by a passphrase, but none was given"},
		{"wrong", "wrong passphrase"},
	} {
		if _, err := Open(StoreOptions{Dir: dir, Passphrase: tt.pass}, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open with passphrase %q: %v, want %q", tt.pass, err, tt.want)
		}
	}
	st = newTestStore(t, StoreOptions{Dir: dir, Passphrase: "correct horse"})
	if diff := cmp.Diff(map[string]string{"K": "v"}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestConcurrentWritersShareCommits(t *testing.T) {
	st := newTestStore(t, StoreOptions{KeepVersions: 1000})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.Set(ctx, "secret/app", kvs(fmt.Sprintf("K%03d", i), fmt.Sprint(i)), "t"); err != nil {
				errs <- err
			}
		}()
	}
	// A bad request in the middle of a batch fails alone.
	if _, err := st.Rollback(ctx, "secret/app", 9999, "t"); err == nil {
		t.Error("rollback to a missing version succeeded")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := mustGet(t, st, "secret/app", 0)
	if len(got) != 200 {
		t.Errorf("newest version has %d keys, want 200", len(got))
	}
	hist, _ := st.History(ctx, "secret/app")
	if len(hist) != 200 {
		t.Errorf("%d versions, want 200", len(hist))
	}
}

func TestSubscribe(t *testing.T) {
	st := newTestStore(t, StoreOptions{})
	sub := st.Subscribe()
	defer sub.Close()
	mustSet(t, st, "secret/a", "K", "1")
	mustSet(t, st, "secret/b", "K", "1")
	select {
	case <-sub.C():
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	paths, all := sub.Take()
	if diff := cmp.Diff([]string{"secret/a", "secret/b"}, paths); diff != "" || all {
		t.Errorf("Take = %v, %v (-want +got):\n%s", paths, all, diff)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshotDir returns the content of every regular file under dir, by relative name.
func snapshotDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%x", sha256sum(b))
		return nil
	})
	return out
}
