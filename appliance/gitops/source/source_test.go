package source_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
)

func newSource(t *testing.T, cfg source.Config) *source.Source {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	s, err := source.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// readTree returns path → content for every regular file under dir.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("read tree: %v", err)
	}
	return out
}

func wantKind(t *testing.T, err error, kind error, mustContain ...string) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v; want kind %q", err, kind)
	}
	for _, s := range mustContain {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestHeadFollowsPushes(t *testing.T) {
	srv := gittest.NewServer(t)
	first := srv.Commit(map[string]string{"a.txt": "one"}, "first")
	s := newSource(t, source.Config{URL: srv.URL()})
	got, err := s.Head(ctx(t))
	if err != nil || got != first {
		t.Fatalf("Head = %q, %v; want %q", got, err, first)
	}
	second := srv.Commit(map[string]string{"a.txt": "two"}, "second")
	got, err = s.Head(ctx(t))
	if err != nil || got != second {
		t.Fatalf("Head after push = %q, %v; want %q", got, err, second)
	}

	// An explicit branch is followed instead of HEAD.
	srv.SetRef("refs/heads/release", first)
	rel := newSource(t, source.Config{URL: srv.URL(), Branch: "release"})
	if got, err := rel.Head(ctx(t)); err != nil || got != first {
		t.Fatalf("Head(release) = %q, %v; want %q", got, err, first)
	}
}

func TestHeadFetchesNoObjects(t *testing.T) {
	srv := gittest.NewServer(t)
	srv.Commit(map[string]string{"a.txt": "one"}, "first")
	s := newSource(t, source.Config{URL: srv.URL()})
	before := srv.Requests()
	for range 3 {
		if _, err := s.Head(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	// One GET /info/refs per Head; a fetch would add POST git-upload-pack.
	if n := srv.Requests() - before; n != 3 {
		t.Errorf("3 Head calls made %d requests; want 3", n)
	}
}

func TestCheckoutExactTreeAndCache(t *testing.T) {
	srv := gittest.NewServer(t)
	c1 := srv.Commit(map[string]string{"a.txt": "one", "dir/b.yaml": "b: 1\n"}, "first")
	c2 := srv.Commit(map[string]string{"a.txt": "two", "dir/b.yaml": gittest.Deleted, "c.txt": "new"}, "second")
	s := newSource(t, source.Config{URL: srv.URL(), KeepTrees: 2})

	dir2, err := s.Checkout(ctx(t), c2)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir2) != c2 {
		t.Errorf("checkout dir %s is not named after the SHA", dir2)
	}
	if diff := cmp.Diff(map[string]string{"a.txt": "two", "c.txt": "new"}, readTree(t, dir2)); diff != "" {
		t.Errorf("tree of %s (-want +got):\n%s", c2, diff)
	}

	// Cache reuse: same directory, no request to the server.
	before := srv.Requests()
	again, err := s.Checkout(ctx(t), c2)
	if err != nil || again != dir2 {
		t.Fatalf("second Checkout = %q, %v; want %q", again, err, dir2)
	}
	if n := srv.Requests() - before; n != 0 {
		t.Errorf("cached Checkout made %d requests; want 0", n)
	}

	// An older commit that no ref points at any more (fetched by SHA).
	dir1, err := s.Checkout(ctx(t), c1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a.txt": "one", "dir/b.yaml": "b: 1\n"}, readTree(t, dir1)); diff != "" {
		t.Errorf("tree of %s (-want +got):\n%s", c1, diff)
	}

	// Using c2 again (a cache hit) makes c1 the least recently used, though it was checked
	// out last: a third commit with KeepTrees=2 removes c1.
	if again, err := s.Checkout(ctx(t), c2); err != nil || again != dir2 {
		t.Fatalf("Checkout of the cached %s = %q, %v; want %q", c2, again, err, dir2)
	}
	c3 := srv.Commit(map[string]string{"a.txt": "three"}, "third")
	dir3, err := s.Checkout(ctx(t), "") // empty = current head
	if err != nil || filepath.Base(dir3) != c3 {
		t.Fatalf("Checkout(\"\") = %q, %v; want tree of %s", dir3, err, c3)
	}
	ents, _ := os.ReadDir(filepath.Dir(dir3))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{c2, c3}, names, cmpSorted); diff != "" {
		t.Errorf("kept trees (-want +got):\n%s", diff)
	}
	// No temp dirs left behind.
	ents, _ = os.ReadDir(filepath.Dir(filepath.Dir(dir3)))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temp dir %s left behind", e.Name())
		}
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestLocalPath(t *testing.T) {
	srv := gittest.NewServer(t)
	sha := srv.Commit(map[string]string{"x/y.txt": "local"}, "first")
	s := newSource(t, source.Config{URL: srv.Dir()})
	got, err := s.Head(ctx(t))
	if err != nil || got != sha {
		t.Fatalf("Head = %q, %v; want %q", got, err, sha)
	}
	dir, err := s.Checkout(ctx(t), sha)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"x/y.txt": "local"}, readTree(t, dir)); diff != "" {
		t.Errorf("tree (-want +got):\n%s", diff)
	}
}

func TestListRefs(t *testing.T) {
	srv := gittest.NewServer(t)
	main := srv.Commit(map[string]string{"a": "1"}, "first")
	srv.Branch = "feature"
	feat := srv.Commit(map[string]string{"a": "2"}, "feature")
	srv.SetRef("refs/pull/7/head", feat)
	srv.SetRef("refs/pull/7/merge", feat)
	srv.SetRef("refs/merge-requests/3/head", main)
	srv.SetRef("refs/tags/v1", main)
	s := newSource(t, source.Config{URL: srv.URL()})
	got, err := s.ListRefs(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"main":                       main,
		"feature":                    feat,
		"refs/pull/7/head":           feat,
		"refs/merge-requests/3/head": main,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListRefs (-want +got):\n%s", diff)
	}
	refs, err := s.Refs(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	wantRefs := source.Refs{
		Default:  "main",
		Branches: map[string]string{"main": main, "feature": feat},
		Reviews:  map[int64]string{7: feat, 3: main},
	}
	if diff := cmp.Diff(wantRefs, refs); diff != "" {
		t.Errorf("Refs (-want +got):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	srv := gittest.NewServer(t)
	srv.Commit(map[string]string{"a": "1"}, "first")

	t.Run("branch not found", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.URL(), Branch: "nope"})
		_, err := s.Head(ctx(t))
		wantKind(t, err, source.ErrBranchNotFound, srv.URL(), `"nope"`, "remote has: main", "fix:")
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String() + "/repo.git"
		l.Close()
		s := newSource(t, source.Config{URL: url})
		_, err = s.Head(ctx(t))
		wantKind(t, err, source.ErrUnreachable, url, "fix:")
		_, err = s.Checkout(ctx(t), strings.Repeat("a", 40))
		wantKind(t, err, source.ErrUnreachable, url)
	})
	t.Run("repository not found", func(t *testing.T) {
		url := strings.TrimSuffix(srv.URL(), "repo.git") + "missing.git"
		s := newSource(t, source.Config{URL: url})
		_, err := s.Head(ctx(t))
		wantKind(t, err, source.ErrRepoNotFound, url)
	})
	t.Run("commit not found", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.URL()})
		_, err := s.Checkout(ctx(t), strings.Repeat("b", 40))
		wantKind(t, err, source.ErrCommitNotFound, srv.URL())
	})
	t.Run("not a sha", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.URL()})
		if _, err := s.Checkout(ctx(t), "main"); err == nil {
			t.Fatal("Checkout(\"main\") succeeded; want an error asking for a SHA")
		}
	})
	t.Run("canceled is not classified", func(t *testing.T) {
		s := newSource(t, source.Config{URL: srv.URL()})
		c, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.Head(c)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Head with canceled ctx = %v; want context.Canceled", err)
		}
	})
}

func TestBasicAuth(t *testing.T) {
	srv := gittest.NewServerWith(t, gittest.Options{Username: "alice", Password: "s3cret-pw"})
	sha := srv.Commit(map[string]string{"a": "1"}, "first")

	ok := newSource(t, source.Config{URL: srv.URL(), Auth: source.Auth{Username: "alice", Password: "s3cret-pw"}})
	if got, err := ok.Head(ctx(t)); err != nil || got != sha {
		t.Fatalf("Head with right password = %q, %v", got, err)
	}
	if _, err := ok.Checkout(ctx(t), sha); err != nil {
		t.Fatalf("Checkout with right password: %v", err)
	}
	token := newSource(t, source.Config{URL: srv.URL(), Auth: source.Auth{Username: "alice", Token: "s3cret-pw"}})
	if got, err := token.Head(ctx(t)); err != nil || got != sha {
		t.Fatalf("Head with token = %q, %v", got, err)
	}

	for name, auth := range map[string]source.Auth{
		"wrong password": {Username: "alice", Password: "wrong-pw"},
		"no credentials": {},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSource(t, source.Config{URL: srv.URL(), Auth: auth})
			_, err := s.Head(ctx(t))
			wantKind(t, err, source.ErrAuth, srv.URL(), "fix:")
			if strings.Contains(err.Error(), "wrong-pw") || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the password: %v", err)
			}
			_, err = s.Checkout(ctx(t), sha)
			wantKind(t, err, source.ErrAuth)
		})
	}
}

func TestSizeGuard(t *testing.T) {
	srv := gittest.NewServer(t)
	sha := srv.Commit(map[string]string{"big.bin": strings.Repeat("x", 4096), "small": "y"}, "big")
	s := newSource(t, source.Config{URL: srv.URL(), MaxTreeBytes: 1024})
	_, err := s.Checkout(ctx(t), sha)
	wantKind(t, err, source.ErrTooLarge, srv.URL(), "1024")

	ok := newSource(t, source.Config{URL: srv.URL(), MaxTreeBytes: 8192})
	if _, err := ok.Checkout(ctx(t), sha); err != nil {
		t.Fatalf("Checkout under the limit: %v", err)
	}
}

func TestUnsafeSymlinkRefused(t *testing.T) {
	srv := gittest.NewServer(t)
	srv.Commit(map[string]string{"a": "1"}, "first")
	// Plant a symlink blob with git plumbing in the served repo.
	blob := srv.GitStdin("/etc/passwd", "hash-object", "-w", "--stdin")
	tree := srv.GitStdin("120000 blob "+blob+"\tleak\n", "mktree")
	sha := srv.Git("commit-tree", tree, "-m", "symlink")
	srv.SetRef("refs/heads/main", sha)

	s := newSource(t, source.Config{URL: srv.URL()})
	_, err := s.Checkout(ctx(t), sha)
	wantKind(t, err, source.ErrUnsafeTree, "leak")
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		cfg        source.Config
	}{
		{"empty url", "url is empty", source.Config{}},
		{"credentials in url", "embeds credentials", source.Config{URL: "https://bob:pw@example.com/r.git"}},
		{"full ref as branch", "not a plain branch name", source.Config{URL: "https://example.com/r.git", Branch: "refs/heads/main"}},
		{"two secrets", "more than one", source.Config{URL: "https://example.com/r.git", Auth: source.Auth{Token: "t", Password: "p"}}},
		{"ssh key on https", "SSH key", source.Config{URL: "https://example.com/r.git", Auth: source.Auth{SSHKey: []byte("k")}}},
		{"ssh without key", "without auth.ssh_key", source.Config{URL: "git@example.com:org/r.git"}},
		{"ssh without known_hosts", "known_hosts", source.Config{URL: "ssh://git@example.com/r.git", Auth: source.Auth{SSHKey: []byte("k")}}},
		{"token on ssh", "password or token", source.Config{URL: "ssh://git@example.com/r.git", Auth: source.Auth{Token: "t"}}},
		{"bad ssh key", "cannot use auth.ssh_key", source.Config{URL: "ssh://git@example.com/r.git", Auth: source.Auth{SSHKey: []byte("k"), KnownHosts: []byte("x")}}},
		{"auth on local path", "local path", source.Config{URL: "/srv/r.git", Auth: source.Auth{Token: "t"}}},
		{"negative keep", "keep_trees", source.Config{URL: "/srv/r.git", KeepTrees: -1}},
		{"ok https", "", source.Config{URL: "https://example.com/r.git", Auth: source.Auth{Token: "t"}}},
		{"ok local", "", source.Config{URL: "/srv/r.git"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v; want error containing %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), ":pw@") {
				t.Errorf("error leaks the URL password: %v", err)
			}
		})
	}
}

// TestHeadPollingCPU measures the CPU cost of 50 Head calls against an
// unchanged repository (issue 5's "50 unchanged repos" figure). It prints the
// numbers and asserts nothing about time. Run with -v to see them.
func TestHeadPollingCPU(t *testing.T) {
	srv := gittest.NewServer(t)
	srv.Commit(map[string]string{"a": "1"}, "first")
	for i := range 20 { // a few refs, like a real repo with branches and PRs
		srv.SetRef("refs/pull/"+strconv.Itoa(i)+"/head", srv.Git("rev-parse", "HEAD"))
	}
	s := newSource(t, source.Config{URL: srv.URL()})
	if _, err := s.Head(ctx(t)); err != nil { // warm up
		t.Fatal(err)
	}
	self0, child0 := rusage(t)
	start := time.Now()
	for range 50 {
		if _, err := s.Head(ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	wall := time.Since(start)
	self1, child1 := rusage(t)
	t.Logf("50 Head() calls on an unchanged repo: wall %v, CPU in this process (client + Go HTTP server) %v, CPU in git http-backend children %v",
		wall.Round(time.Millisecond), (self1 - self0).Round(time.Millisecond), (child1 - child0).Round(time.Millisecond))
}

func rusage(t *testing.T) (self, children time.Duration) {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		t.Fatal(err)
	}
	return self, time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkHead(b *testing.B) {
	srv := gittest.NewServer(b)
	srv.Commit(map[string]string{"a": "1"}, "first")
	s, err := source.New(source.Config{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Head(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDefaultBranchAndEmptyRepo(t *testing.T) {
	srv := gittest.NewServer(t)
	s := newSource(t, source.Config{URL: srv.URL()})
	_, err := s.Head(ctx(t))
	wantKind(t, err, source.ErrEmptyRepository, srv.URL())

	srv.Commit(map[string]string{"a": "1"}, "on main")
	srv.Branch = "trunk"
	trunk := srv.Commit(map[string]string{"a": "2"}, "on trunk")
	srv.Git("symbolic-ref", "HEAD", "refs/heads/trunk")
	if got, err := s.Head(ctx(t)); err != nil || got != trunk {
		t.Fatalf("Head with HEAD -> trunk = %q, %v; want %q", got, err, trunk)
	}
}

func TestKindOf(t *testing.T) {
	srv := gittest.NewServer(t)
	srv.Commit(map[string]string{"a": "1"}, "first")
	s := newSource(t, source.Config{URL: srv.URL(), Branch: "gone"})
	_, err := s.Head(ctx(t))
	if k := source.KindOf(fmt.Errorf("sync: %w", err)); k != source.ErrBranchNotFound || k.Hint() == "" {
		t.Fatalf("KindOf = %v; want ErrBranchNotFound with a hint", k)
	}
	if k := source.KindOf(context.Canceled); k != nil {
		t.Errorf("KindOf(context.Canceled) = %v; want nil", k)
	}
}
