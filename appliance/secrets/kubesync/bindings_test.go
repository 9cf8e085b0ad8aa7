package kubesync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func newBindingFile(t *testing.T) *Bindings {
	t.Helper()
	s, _, _ := newTestSyncer(t)
	return &Bindings{syncer: s, path: filepath.Join(t.TempDir(), "state", "secret-bindings.json"), gitops: map[string][]Binding{}}
}

func TestBindingFileRoundTrip(t *testing.T) {
	f := newBindingFile(t)
	bs, err := f.load()
	if err != nil || bs != nil {
		t.Fatalf("load of a missing file = %v, %v; want no bindings and no error", bs, err)
	}
	web := Binding{Namespace: "web", Name: "db", Path: "apps/web/db", Keys: map[string]string{"PASSWORD": "password"}}
	api := Binding{Namespace: "api", Name: "token", Path: "apps/api/token"}
	add := func(b Binding) func([]Binding) ([]Binding, error) {
		return func(bs []Binding) ([]Binding, error) { return append(bs, b), nil }
	}
	for _, b := range []Binding{web, api} {
		if err := f.update(add(b)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	// Stored sorted by namespace/name, whatever order they were added in.
	if diff := cmp.Diff([]Binding{api, web}, got); diff != "" {
		t.Errorf("bindings (-want +got)\n%s", diff)
	}
	if st, err := os.Stat(f.path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("binding file mode = %v, %v; want 0600", st.Mode(), err)
	}
	if _, err := os.Stat(f.path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}

	// A failing change leaves the file as it was.
	boom := errors.New("refused")
	err = f.update(func(bs []Binding) ([]Binding, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("update = %v, want the change's error", err)
	}
	after, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, after); diff != "" {
		t.Errorf("a failed update changed the file (-before +after)\n%s", diff)
	}

	// Removing every binding leaves a file that loads as no bindings.
	if err := f.update(func([]Binding) ([]Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if bs, err := f.load(); err != nil || len(bs) != 0 {
		t.Errorf("after removing all: %v, %v", bs, err)
	}
}

func TestBindingFileCorrupt(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"truncated", `[{"namespace": "web"`},
		{"not a list", `{"namespace": "web"}`},
		{"garbage", "\x00\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newBindingFile(t)
			if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			for what, err := range map[string]error{
				"load":   func() error { _, err := f.load(); return err }(),
				"update": f.update(func(bs []Binding) ([]Binding, error) { return bs, nil }),
			} {
				if err == nil || !strings.Contains(err.Error(), f.path+" is corrupt") || !strings.Contains(err.Error(), "gluebox secret bind") {
					t.Errorf("%s = %v, want a corrupt-file error naming the file and the fix", what, err)
				}
			}
			if b, _ := os.ReadFile(f.path); string(b) != tc.content {
				t.Errorf("a corrupt file was overwritten: %q", b)
			}
		})
	}
}

func TestBindingsUnionWithGitOps(t *testing.T) {
	s, st, _ := newTestSyncer(t)
	set(t, st, "secret/web", "TOKEN", "t")
	set(t, st, "secret/web-git", "TOKEN", "g")
	path := filepath.Join(t.TempDir(), "state", "secret-bindings.json")
	b, err := NewBindings(s, path)
	if err != nil {
		t.Fatal(err)
	}
	byHand := Binding{Namespace: ns, Name: "env", Path: "secret/web"}
	other := Binding{Namespace: ns, Name: "other", Path: "secret/web"}
	fromGit := Binding{Namespace: ns, Name: "env", Path: "secret/web-git"}
	for _, nb := range []Binding{byHand, other} {
		if err := b.Bind(nb); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetGitOps(t.Context(), ns, []Binding{fromGit}); err != nil {
		t.Fatal(err)
	}
	// paths lists what the syncer was handed (Status would show the last sync's instead).
	paths := func() map[string]string {
		s.mu.Lock()
		defer s.mu.Unlock()
		out := map[string]string{}
		for _, nb := range s.bindings {
			out[nb.id()] = nb.Path
		}
		return out
	}
	// For the same namespace/name the engine's binding wins; the others stay.
	want := map[string]string{ns + "/env": "secret/web-git", ns + "/other": "secret/web"}
	if diff := cmp.Diff(want, paths()); diff != "" {
		t.Errorf("bindings with GitOps (-want +got):\n%s", diff)
	}
	// Once the engine drops its binding, the one declared by hand is back.
	if err := b.SetGitOps(t.Context(), ns, nil); err != nil {
		t.Fatal(err)
	}
	byHandOnly := map[string]string{ns + "/env": "secret/web", ns + "/other": "secret/web"}
	if diff := cmp.Diff(byHandOnly, paths()); diff != "" {
		t.Errorf("bindings after GitOps dropped its own (-want +got):\n%s", diff)
	}
	// The file keeps only what was declared by hand, and a restart reads it back.
	if err := b.SetGitOps(t.Context(), ns, []Binding{fromGit}); err != nil {
		t.Fatal(err)
	}
	again, err := NewBindings(s, path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(byHandOnly, paths()); diff != "" {
		t.Errorf("bindings after reload (-want +got):\n%s", diff)
	}
	if err := again.Unbind(ns, "other"); err != nil {
		t.Fatal(err)
	}
	if err := again.Unbind(ns, "other"); err == nil || !strings.Contains(err.Error(), "no secret binding "+ns+"/other") {
		t.Errorf("second Unbind = %v", err)
	}
}
