package state

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestHistoryKeepsNewestAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gitops.db")
	s, err := Open(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		n, err := s.AddRevision("app", "prod", Revision{Commit: "c", Digest: "d", AppliedAt: time.Unix(int64(i), 0), Reason: "sync", Manifest: []byte("kind: X\n")})
		if err != nil || n != i {
			t.Fatalf("AddRevision %d = %d, %v", i, n, err)
		}
	}
	if _, err := s.UpdateEnv("app", "prod", func(e *Env) { e.Revision, e.Held = 5, true }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.History("app", "prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[0].N != 5 || h[2].N != 3 || h[0].Manifest != nil {
		t.Fatalf("history = %+v", h)
	}
	if _, err := s.Revision("app", "prod", 2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("trimmed revision: %v", err)
	}
	r, err := s.Revision("app", "prod", 4)
	if err != nil || string(r.Manifest) != "kind: X\n" {
		t.Fatalf("revision 4 = %+v, %v", r, err)
	}
	e, err := s.Env("app", "prod")
	if err != nil || !e.Held || e.Revision != 5 {
		t.Fatalf("env = %+v, %v", e, err)
	}
	if err := s.DeleteEnv("app", "prod"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Env("app", "prod"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted env: %v", err)
	}
	if h, _ := s.History("app", "prod"); len(h) != 0 {
		t.Fatalf("history of a deleted env: %v", h)
	}
	// The numbering restarts for a new environment of the same name.
	if n, _ := s.AddRevision("app", "prod", Revision{}); n != 1 {
		t.Fatalf("first revision of a re-created env = %d", n)
	}
}

func TestRepoConfig(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "gitops.db"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok, err := s.RepoConfig(); ok || err != nil {
		t.Fatalf("fresh store has a repo: %v %v", ok, err)
	}
	if err := s.SetRepoConfig(RepoConfig{URL: "https://git.example/x.git", Branch: "main"}); err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.RepoConfig()
	if !ok || err != nil || c.Branch != "main" {
		t.Fatalf("repo = %+v %v %v", c, ok, err)
	}
	if err := s.SetRepoConfig(RepoConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.RepoConfig(); ok {
		t.Fatal("cleared repo still set")
	}
}
