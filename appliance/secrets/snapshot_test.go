package secrets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestBackupVerifyRestore(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t, StoreOptions{})
	mustSet(t, st, "secret/app", "PASSWORD", plaintextMarkers[0])
	mustSet(t, st, "secret/app", "PASSWORD", plaintextMarkers[1])
	mustSet(t, st, "secret/other", "K", "v")
	bdir := t.TempDir()
	m, err := st.Backup(ctx, bdir)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(bdir, m.File)
	assertNoPlaintext(t, file, file+manifestSuffix)
	if m.Secrets != 2 || m.SHA256 == "" || m.Size == 0 {
		t.Errorf("manifest = %+v", m)
	}
	rep, err := st.Verify(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Secrets != 2 || rep.Values != 3 || !rep.Manifest {
		t.Errorf("verify report = %+v, want 2 secrets and 3 values", rep)
	}
	if m2, _ := readManifest(file); m2.Verified.IsZero() {
		t.Error("Verify did not record the verification time")
	}

	// The bbolt file inside the snapshot holds no plaintext either.
	inner := decryptSnapshot(t, st, file)
	for _, mk := range plaintextMarkers {
		if bytes.Contains(inner, []byte(mk)) {
			t.Errorf("snapshot content holds plaintext %q", mk)
		}
	}

	mustSet(t, st, "secret/app", "PASSWORD", "changed-after-backup")
	mustSet(t, st, "secret/new", "K", "v")
	res, err := st.Restore(ctx, file, "t")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"PASSWORD": plaintextMarkers[1]}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("after restore (-want +got):\n%s", diff)
	}
	if _, err := st.Get(ctx, "secret/new", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("path created after the backup survived the restore: %v", err)
	}
	if _, err := os.Stat(res.KeptAside); err != nil {
		t.Errorf("replaced store was not kept aside: %v", err)
	}
	// The store still works after the swap.
	mustSet(t, st, "secret/app", "X", "y")
}

func decryptSnapshot(t *testing.T, st *Store, file string) []byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, st.keys.current)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRestoreRefusesBadSnapshots damages a good backup in several ways, with and without its
// manifest, and checks that Restore refuses each before the live store changes.
func TestRestoreRefusesBadSnapshots(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t, StoreOptions{})
	mustSet(t, st, "secret/app", "K", "live")
	bdir := t.TempDir()
	m, err := st.Backup(ctx, bdir)
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(bdir, m.File))
	if err != nil {
		t.Fatal(err)
	}
	foreign := newTestStore(t, StoreOptions{})
	mustSet(t, foreign, "secret/app", "K", "foreign")
	fdir := t.TempDir()
	fm, err := foreign.Backup(ctx, fdir)
	if err != nil {
		t.Fatal(err)
	}

	flip := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		c[at] ^= 0x40
		return c
	}
	tests := []struct {
		name     string
		content  func(t *testing.T) []byte
		manifest bool
		want     string
	}{
		{"truncated with manifest", func(t *testing.T) []byte { return good[:len(good)/2] }, true, "truncated"},
		{"truncated without manifest", func(t *testing.T) []byte { return good[:len(good)/2] }, false, "damaged"},
		{"tampered with manifest", func(t *testing.T) []byte { return flip(good, len(good)/2) }, true, "corrupt or was tampered with"},
		{"tampered without manifest", func(t *testing.T) []byte { return flip(good, len(good)/2) }, false, "damaged"},
		{"tampered header without manifest", func(t *testing.T) []byte { return flip(good, 40) }, false, "backup"},
		{"empty file", func(t *testing.T) []byte { return nil }, false, "not a readable age file"},
		{"not a backup", func(t *testing.T) []byte { return []byte("hello world\n") }, false, "not a readable age file"},
		{"foreign", func(t *testing.T) []byte {
			b, err := os.ReadFile(filepath.Join(fdir, fm.File))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, false, "sealed for a different identity"},
		{"age file of something else", func(t *testing.T) []byte {
			var buf bytes.Buffer
			w, _ := age.Encrypt(&buf, st.keys.current.Recipient())
			w.Write([]byte("gluebox-secrets-snapshot/v1\n{\"size\":5,\"recipient\":\"x\"}\nhello"))
			w.Close()
			return buf.Bytes()
		}, false, "truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "secrets-bad.snap.age")
			if err := os.WriteFile(file, tt.content(t), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.manifest {
				copyFile(t, filepath.Join(bdir, m.File)+manifestSuffix, file+manifestSuffix)
			}
			liveBefore := fileSum(t, st.DBPath())
			_, err := st.Restore(ctx, file, "t")
			var rej *RejectedError
			if !errors.As(err, &rej) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Restore = %v, want a RejectedError containing %q", err, tt.want)
			}
			if _, err := st.Verify(ctx, file); err == nil {
				t.Error("Verify accepted it")
			}
			if fileSum(t, st.DBPath()) != liveBefore {
				t.Error("refused restore changed the live store file")
			}
			if diff := cmp.Diff(map[string]string{"K": "live"}, mustGet(t, st, "secret/app", 0)); diff != "" {
				t.Errorf("live store after refused restore (-want +got):\n%s", diff)
			}
			if left, _ := filepath.Glob(filepath.Join(st.opts.Dir, ".restore-*")); len(left) > 0 {
				t.Errorf("scratch left behind: %v", left)
			}
		})
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestListAndPruneBackups(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t, StoreOptions{})
	mustSet(t, st, "secret/app", "K", "v")
	bdir := t.TempDir()
	var names []string
	for range 5 {
		m, err := st.Backup(ctx, bdir)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, m.File)
	}
	// Names carry the creation time in nanoseconds, so they sort in the order of the backups;
	// prune and list rely on that (no waiting between backups needed for it).
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Fatalf("backup %d is named %s, not after backup %d's %s", i, names[i], i-1, names[i-1])
		}
	}
	removed, err := pruneBackups(bdir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(names[:2], reverse(removed)); diff != "" {
		t.Errorf("pruned (-want +got):\n%s", diff)
	}
	list, err := ListBackups(bdir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].File != names[4] {
		t.Errorf("ListBackups = %+v", list)
	}
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// snapshotSeed returns the plaintext of a real snapshot, for the fuzz corpus.
func snapshotSeed(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	st, err := Open(StoreOptions{Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Set(context.Background(), "secret/app", kvs("K", "v"), "seed"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err = st.db.View(func(tx *bolt.Tx) error {
		return writeSnapshot(&buf, snapshotHeader{Recipient: st.Recipient(), Size: tx.Size(), Secrets: 1}, tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzReadSnapshot feeds arbitrary plaintext to the snapshot reader: it must never panic, and
// whatever it accepts must pass its own checksum and open as a bbolt file or be refused by
// checkStoreFile without a panic.
func FuzzReadSnapshot(f *testing.F) {
	seed := snapshotSeed(f)
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add(seed[:len(snapshotMagic)+10])
	f.Add([]byte(snapshotMagic + "{\"size\":-1}\n"))
	f.Add([]byte(snapshotMagic + "{\"size\":3,\"recipient\":\"a\"}\nabc" + strings.Repeat("\x00", 32)))
	f.Add([]byte{})
	id, _ := age.GenerateX25519Identity()
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		hdr, err := readSnapshot(bytes.NewReader(data), &out)
		if err != nil {
			return
		}
		if int64(out.Len()) != hdr.Size {
			t.Fatalf("accepted %d bytes, header says %d", out.Len(), hdr.Size)
		}
		p := filepath.Join(t.TempDir(), "s.db")
		if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = checkStoreFile(p, hdr.Recipient, id)
	})
}
