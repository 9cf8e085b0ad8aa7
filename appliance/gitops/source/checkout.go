package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Checkout returns a directory holding the clean work tree of commit sha
// (40 hex digits; empty means the current Head). The tree is fetched with
// depth 1 into a temporary directory and renamed into
// <CacheDir>/<repo>/trees/<sha> only when complete, so readers never see a
// partial tree. An existing tree for sha is reused without contacting the
// remote. The returned directory must be treated as read-only; it stays on
// disk until KeepTrees newer commits have been checked out.
func (s *Source) Checkout(ctx context.Context, sha string) (string, error) {
	if s.repoDir == "" {
		return "", fmt.Errorf("source %s: checkout needs cache_dir: set Config.CacheDir", s.url)
	}
	if sha == "" {
		h, err := s.Head(ctx)
		if err != nil {
			return "", err
		}
		sha = h
	}
	sha = strings.ToLower(sha)
	if !isSHA(sha) {
		return "", fmt.Errorf("source %s: checkout %q: not a 40-digit commit SHA", s.url, sha)
	}
	s.checkout.Lock()
	defer s.checkout.Unlock()

	treesDir := filepath.Join(s.repoDir, "trees")
	final := filepath.Join(treesDir, sha)
	if _, err := os.Stat(final); err == nil {
		now := time.Now()
		_ = os.Chtimes(final, now, now) // mark as recently used for pruning
		return final, nil
	}
	if err := os.MkdirAll(treesDir, 0o755); err != nil {
		return "", fmt.Errorf("source %s: create cache dir: %w", s.url, err)
	}
	s.removeStaleTemps()
	tmp, err := os.MkdirTemp(s.repoDir, ".tmp-")
	if err != nil {
		return "", fmt.Errorf("source %s: create temp dir: %w", s.url, err)
	}
	defer os.RemoveAll(tmp)

	start := time.Now()
	commit, err := s.fetchCommit(ctx, filepath.Join(tmp, "git"), sha)
	if err != nil {
		return "", err
	}
	work := filepath.Join(tmp, "tree")
	size, err := s.writeTree(commit, work)
	if err != nil {
		return "", err
	}
	if err := os.Rename(work, final); err != nil {
		return "", fmt.Errorf("source %s: move checkout into place: %w", s.url, err)
	}
	// Stamp the use with the same clock as a cache hit: the kernel's own mtime comes from a
	// coarse clock that can lag time.Now by a tick, which would misorder the two.
	now := time.Now()
	_ = os.Chtimes(final, now, now)
	s.log.Debug("checked out", "sha", sha, "bytes", size, "took", time.Since(start))
	s.prune(treesDir, sha)
	return final, nil
}

// fetchCommit does a depth-1 fetch of sha into a fresh bare repository at
// gitDir. It fetches the advertised ref pointing at sha (preferring the
// followed branch) so that servers that refuse unadvertised wants still work;
// only when no ref points at sha does it ask for the SHA itself.
func (s *Source) fetchCommit(ctx context.Context, gitDir, sha string) (*object.Commit, error) {
	refs, err := s.listRefs(ctx)
	if err != nil {
		return nil, err
	}
	_, followed, _ := s.resolve(refs)
	var src string
	for _, r := range refs {
		if r.Type() != plumbing.HashReference || r.Hash().String() != sha || r.Name() == plumbing.HEAD {
			continue
		}
		if src == "" || r.Name() == followed {
			src = r.Name().String()
		}
	}
	if src == "" {
		src = sha
	}
	repo, err := git.PlainInit(gitDir, true)
	if err != nil {
		return nil, fmt.Errorf("source %s: init fetch repo: %w", s.url, err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{s.cfg.URL}}); err != nil {
		return nil, fmt.Errorf("source %s: configure fetch repo: %w", s.url, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*s.cfg.Timeout)
	defer cancel()
	err = repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec("+" + src + ":refs/remotes/origin/want")},
		Depth:      1,
		Auth:       s.auth,
		Tags:       git.NoTags,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if src == sha {
			// No ref advertises sha and the server refused or did not find it.
			if cerr := s.classify("fetch", err); !errors.Is(cerr, ErrGit) {
				return nil, cerr
			}
			return nil, &Error{Kind: ErrCommitNotFound, URL: s.url, Err: fmt.Errorf("fetch %s: %w", sha, err)}
		}
		return nil, s.classify("fetch "+src, err)
	}
	commit, err := repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		// The ref moved between the listing and the fetch.
		return nil, &Error{Kind: ErrCommitNotFound, URL: s.url, Err: fmt.Errorf("after fetching %s: %w", src, err)}
	}
	return commit, nil
}

type symlink struct{ name, target string }

// writeTree writes commit's files under dir after checking the total size
// against MaxTreeBytes, so an oversized tree writes nothing. Paths escaping
// dir, .git components and symlinks pointing outside the tree are refused:
// the tree is later read by renderers that must not see host files.
func (s *Source) writeTree(commit *object.Commit, dir string) (int64, error) {
	tree, err := commit.Tree()
	if err != nil {
		return 0, &Error{Kind: ErrGit, URL: s.url, Err: fmt.Errorf("read tree of %s: %w", commit.Hash, err)}
	}
	var total int64
	var files []*object.File
	err = tree.Files().ForEach(func(f *object.File) error {
		if err := checkPath(f.Name); err != nil {
			return &Error{Kind: ErrUnsafeTree, URL: s.url, Err: err}
		}
		total += f.Size
		if s.cfg.MaxTreeBytes > 0 && total > s.cfg.MaxTreeBytes {
			return &Error{Kind: ErrTooLarge, URL: s.url, Err: fmt.Errorf("commit %s exceeds the limit of %d bytes (reached at %s)", commit.Hash, s.cfg.MaxTreeBytes, f.Name)}
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return 0, e
		}
		return 0, &Error{Kind: ErrGit, URL: s.url, Err: fmt.Errorf("walk tree of %s: %w", commit.Hash, err)}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("source %s: create work tree: %w", s.url, err)
	}
	var links []symlink
	for _, f := range files {
		switch f.Mode {
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if err := writeFile(dir, f); err != nil {
				return 0, fmt.Errorf("source %s: write %s: %w", s.url, f.Name, err)
			}
		case filemode.Symlink:
			target, err := f.Contents()
			if err != nil {
				return 0, fmt.Errorf("source %s: read symlink %s: %w", s.url, f.Name, err)
			}
			if filepath.IsAbs(target) || !isLocal(path.Join(path.Dir(f.Name), target)) {
				return 0, &Error{Kind: ErrUnsafeTree, URL: s.url, Err: fmt.Errorf("symlink %s points outside the repository (%s)", f.Name, target)}
			}
			links = append(links, symlink{f.Name, target})
		}
	}
	// Symlinks last, so no file is ever written through one.
	for _, l := range links {
		p := filepath.Join(dir, filepath.FromSlash(l.name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, fmt.Errorf("source %s: create dir for %s: %w", s.url, l.name, err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			return 0, fmt.Errorf("source %s: create symlink %s: %w", s.url, l.name, err)
		}
	}
	return total, nil
}

func writeFile(dir string, f *object.File) error {
	p := filepath.Join(dir, filepath.FromSlash(f.Name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if f.Mode == filemode.Executable {
		perm = 0o755
	}
	r, err := f.Reader()
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkPath refuses tree paths that could escape the work tree or plant Git metadata.
func checkPath(name string) error {
	if !isLocal(name) {
		return fmt.Errorf("path %q escapes the work tree", name)
	}
	for _, c := range strings.Split(name, "/") {
		if strings.EqualFold(c, ".git") {
			return fmt.Errorf("path %q contains a .git component", name)
		}
	}
	return nil
}

func isLocal(slashPath string) bool {
	return slashPath != "" && !strings.HasPrefix(slashPath, "/") && filepath.IsLocal(filepath.FromSlash(slashPath))
}

func isSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// removeStaleTemps deletes temp dirs left by an interrupted checkout.
// Callers hold s.checkout.
func (s *Source) removeStaleTemps() {
	ents, _ := os.ReadDir(s.repoDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			_ = os.RemoveAll(filepath.Join(s.repoDir, e.Name()))
		}
	}
}

// prune keeps the KeepTrees most recently used trees, never removing keep.
func (s *Source) prune(treesDir, keep string) {
	ents, err := os.ReadDir(treesDir)
	if err != nil {
		return
	}
	type tree struct {
		name string
		mod  time.Time
	}
	var trees []tree
	for _, e := range ents {
		if !e.IsDir() || e.Name() == keep {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		trees = append(trees, tree{e.Name(), info.ModTime()})
	}
	sort.Slice(trees, func(i, j int) bool { return trees[i].mod.After(trees[j].mod) })
	for i, t := range trees {
		if i+1 < s.cfg.KeepTrees { // +1 for keep itself
			continue
		}
		if err := os.RemoveAll(filepath.Join(treesDir, t.name)); err != nil {
			s.log.Warn("cannot remove old checkout", "sha", t.name, "err", err)
		}
	}
}
