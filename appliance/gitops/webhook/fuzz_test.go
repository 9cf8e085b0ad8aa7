package webhook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds payloads to the parser of every provider and event kind. Its seed corpus is
// the realistic payloads in testdata/payloads, which plain `go test` runs too. It checks that
// parsing never panics and that whatever it accepts is what the engine may act on.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed payloads: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		// Seed each payload under its own provider and kind, and the others too: a Gitea
		// payload sent as a GitLab event must fail cleanly.
		for sel := range uint8(8) {
			f.Add(sel, "application/json", b)
		}
	}
	f.Add(uint8(0), "application/x-www-form-urlencoded", []byte("payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"))

	f.Fuzz(func(t *testing.T, sel uint8, contentType string, body []byte) {
		providers := []Provider{GitHub, GitLab, Gitea, Forgejo}
		p := providers[int(sel)%len(providers)]
		kind := KindPush
		if sel&4 != 0 {
			kind = KindPullRequest
		}
		got, err := parse(p, kind, contentType, body)
		if err != nil {
			return
		}
		ev := got.event
		if ev.Kind != kind {
			t.Fatalf("kind %q, want %q", ev.Kind, kind)
		}
		if !strings.HasPrefix(ev.Ref, "refs/") || hasControl(ev.Ref) {
			t.Fatalf("ref %q accepted", ev.Ref)
		}
		if len(got.repoURLs) == 0 {
			t.Fatal("no repository URL, yet accepted")
		}
		for _, u := range got.repoURLs {
			if n, err := NormalizeURL(u); err != nil || n != u {
				t.Fatalf("candidate %q is not normalised: %q, %v", u, n, err)
			}
		}
		switch kind {
		case KindPush:
			if !isSHA(ev.Before) || !isSHA(ev.After) || ev.PullRequest != nil {
				t.Fatalf("push %+v accepted", ev)
			}
			if isZero(ev.After) && !ev.Deleted {
				t.Fatalf("deletion not flagged: %+v", ev)
			}
		case KindPullRequest:
			pr := ev.PullRequest
			if pr == nil || pr.Number <= 0 || !isSHA(pr.HeadSHA) || ev.Ref != "refs/heads/"+pr.BaseBranch {
				t.Fatalf("pull request %+v / %+v accepted", ev, pr)
			}
		}
	})
}

// FuzzNormalizeURL checks that NormalizeURL never panics and is idempotent.
func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{
		"https://github.com/Acme/repo.git", "git@github.com:Acme/repo.git", "ssh://git@h:2222/a/b.git",
		"http://[::1]:8080/repo.git", "github.com/Acme/repo", "h/a.git.git", "h/a/.git",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeURL(s)
		if err != nil {
			return
		}
		again, err := NormalizeURL(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeURL(%q) = %q, then %q, %v", s, n, again, err)
		}
	})
}
