// Package gittest starts real Git servers for tests: a bare repository served
// by `git http-backend` (through net/http/cgi on 127.0.0.1) plus helpers to
// commit files and create refs in it. It needs the git binary and no network.
//
// For tests only: import it from _test.go files, never from production code.
package gittest

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// Deleted as a value in Commit's files map removes that path.
const Deleted = "\x00gittest-delete\x00"

// Server is a bare repository served over smart HTTP. The default branch is "main".
type Server struct {
	t      T
	root   string // GIT_PROJECT_ROOT
	bare   string // root/repo.git
	work   string // a clone used to make commits
	env    []string
	srv    *httptest.Server
	user   string
	pass   string
	reqs   atomic.Int64
	Branch string // branch Commit pushes to; "main" unless changed
}

// Options change NewServerWith's behaviour. The zero value serves
// anonymously.
type Options struct {
	// Username and Password, when Username is set, are required as HTTP
	// basic auth on every request; others get 401.
	Username, Password string
	// Listener, when set, is where the server listens (for example a socket opened in a test
	// node's network namespace); the default is a loopback port of the test's namespace.
	Listener net.Listener
}

// NewServer starts an anonymous server over an empty bare repository and
// stops it with t.Cleanup. Skips the test when git is not installed (fails under
// GLUEBOX_REQUIRE_REAL=1).
func NewServer(t T) *Server { return NewServerWith(t, Options{}) }

// T is the part of testing.TB the server uses, so benchmarks outside `go test` can run one.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Skip(args ...any)
	TempDir() string
	Cleanup(func())
}

var _ T = testing.TB(nil)

// NewServerWith is NewServer with options.
func NewServerWith(t T, o Options) *Server {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		testbin.RequireReal(t, "gittest: git binary not installed")
	}
	execPath, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		t.Fatalf("gittest: git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend")
	dir := t.TempDir()
	s := &Server{
		t: t, root: filepath.Join(dir, "srv"), work: filepath.Join(dir, "work"),
		user: o.Username, pass: o.Password, Branch: "main",
		env: []string{
			"HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "PATH=" + os.Getenv("PATH"),
			"GIT_AUTHOR_NAME=gittest", "GIT_AUTHOR_EMAIL=gittest@example.invalid",
			"GIT_COMMITTER_NAME=gittest", "GIT_COMMITTER_EMAIL=gittest@example.invalid",
		},
	}
	s.bare = filepath.Join(s.root, "repo.git")
	s.git("", "init", "-q", "--bare", "-b", "main", s.bare)
	s.git(s.bare, "config", "uploadpack.allowReachableSHA1InWant", "true")
	s.git("", "init", "-q", "-b", "main", s.work)
	s.git(s.work, "remote", "add", "origin", s.bare)

	h := &cgi.Handler{
		Path: backend,
		Root: "/",
		// http-backend complains on stderr about missing repos; tests
		// see the HTTP status instead.
		Stderr: io.Discard,
		Env:    append([]string{"GIT_PROJECT_ROOT=" + s.root, "GIT_HTTP_EXPORT_ALL=1"}, s.env...),
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		if s.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != s.user || p != s.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="gittest"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	if o.Listener != nil {
		s.srv.Listener.Close()
		s.srv.Listener = o.Listener
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the repository's http:// URL.
func (s *Server) URL() string { return s.srv.URL + "/repo.git" }

// Requests is the number of HTTP requests served so far.
func (s *Server) Requests() int64 { return s.reqs.Load() }

// Dir is the bare repository's path, usable as a local-path URL.
func (s *Server) Dir() string { return s.bare }

// Commit writes files (path → content; Deleted removes the path), commits
// them with msg, pushes to s.Branch and returns the new commit SHA.
func (s *Server) Commit(files map[string]string, msg string) string {
	s.t.Helper()
	for name, content := range files {
		p := filepath.Join(s.work, filepath.FromSlash(name))
		if content == Deleted {
			s.git(s.work, "rm", "-q", "-r", "--ignore-unmatch", "--", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			s.t.Fatalf("gittest: %v", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			s.t.Fatalf("gittest: %v", err)
		}
	}
	s.git(s.work, "add", "-A")
	s.git(s.work, "commit", "-q", "--allow-empty", "-m", msg)
	s.git(s.work, "push", "-q", "-f", "origin", "HEAD:refs/heads/"+s.Branch)
	return s.git(s.work, "rev-parse", "HEAD")
}

// SetRef points ref (e.g. "refs/pull/7/head" or "refs/heads/feature") at sha
// in the served repository.
func (s *Server) SetRef(ref, sha string) {
	s.t.Helper()
	s.git(s.bare, "update-ref", ref, sha)
}

// DeleteRef removes ref from the served repository.
func (s *Server) DeleteRef(ref string) {
	s.t.Helper()
	s.git(s.bare, "update-ref", "-d", ref)
}

// Git runs a git command in the served bare repository and returns its
// trimmed output; for anything the helpers above do not cover.
func (s *Server) Git(args ...string) string {
	s.t.Helper()
	return s.git(s.bare, args...)
}

// GitStdin is Git with stdin as the command's standard input.
func (s *Server) GitStdin(stdin string, args ...string) string {
	s.t.Helper()
	return s.gitIn(s.bare, strings.NewReader(stdin), args...)
}

func (s *Server) git(dir string, args ...string) string {
	s.t.Helper()
	return s.gitIn(dir, nil, args...)
}

func (s *Server) gitIn(dir string, stdin io.Reader, args ...string) string {
	s.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Stdin = stdin
	cmd.Env = s.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("gittest: git %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String())
}
