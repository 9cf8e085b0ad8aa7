package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// entries lists dir's names, so a test can tell that no temporary file was left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name string
		old  []byte // nil: no file before
		data []byte
		perm fs.FileMode
	}{
		{name: "new private key", data: []byte("-----BEGIN EC PRIVATE KEY-----\n"), perm: 0o600},
		{name: "replaces and changes mode", old: []byte("old content that is longer"), data: []byte("new"), perm: 0o644},
		{name: "empty", old: []byte("old"), data: []byte{}, perm: 0o640},
		// The umask (022 for most shells) would turn 0666 into 0644 with os.WriteFile.
		{name: "mode is exact, not masked", data: []byte("x"), perm: 0o666},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.old != nil {
				if err := os.WriteFile(path, tc.old, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tc.data, tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(string(tc.data), string(got)); diff != "" {
				t.Errorf("content (-want +got):\n%s", diff)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.perm {
				t.Errorf("mode = %v, want %v", got, tc.perm)
			}
			if diff := cmp.Diff([]string{"f"}, entries(t, dir)); diff != "" {
				t.Errorf("directory after write (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteFailedKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, []byte(`{"old":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("encoder failed")
	err := Write(path, 0o600, func(w io.Writer) error {
		if _, err := io.WriteString(w, `{"new":`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Write() error = %v, want it to wrap %v", err, boom)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(`{"old":true}`, string(got)); diff != "" {
		t.Errorf("content after a failed write (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"state.json"}, entries(t, dir)); diff != "" {
		t.Errorf("directory after a failed write (-want +got):\n%s", diff)
	}
}

func TestWriteFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "f")
	if err := WriteFile(path, []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WriteFile() error = %v, want one wrapping fs.ErrNotExist", err)
	}
}

func TestSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "current")
	for _, target := range []string{"aaaa", "bbbb", "bbbb"} {
		if err := Symlink(target, path); err != nil {
			t.Fatalf("Symlink(%q) error = %v", target, err)
		}
		got, err := os.Readlink(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != target {
			t.Errorf("link after Symlink(%q) points at %q", target, got)
		}
		if diff := cmp.Diff([]string{"current"}, entries(t, dir)); diff != "" {
			t.Errorf("directory after Symlink(%q) (-want +got):\n%s", target, diff)
		}
	}
}
