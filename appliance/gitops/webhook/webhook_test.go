package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// followed are the repositories the test receiver follows, by normalised URL, with their
// secrets.
var followed = map[string]string{
	"github.com/Acme/deployment-configurations":                  "gh-secret",
	"github.com/Acme/hello-world":                                "hw-secret",
	"gitlab.example.com/platform/team/deployment-configurations": "gl-secret",
	"gitlab.example.com/Acme/hello-world":                        "gl-hw-secret",
	"git.example.com/acme/deployment-configurations":             "gitea-secret",
	"git.example.com/acme/hello-world":                           "gitea-hw-secret",
	"codeberg.org/Team/Deploy":                                   "fj-secret",
	"github.com/Acme/no-secret":                                  "",
}

type testReceiver struct {
	*Receiver
	mu     sync.Mutex
	events []Event
	logs   *bytes.Buffer
	now    time.Time
}

func newTestReceiver(t *testing.T, mutate func(*Config)) *testReceiver {
	t.Helper()
	tr := &testReceiver{logs: &bytes.Buffer{}, now: time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)}
	cfg := Config{
		Secret: func(repo string) ([]byte, bool) {
			s, ok := followed[repo]
			return []byte(s), ok
		},
		OnEvent: func(ev Event) {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			tr.events = append(tr.events, ev)
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg, slog.New(slog.NewTextHandler(tr.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.replay.now = func() time.Time { return tr.now }
	tr.Receiver = r
	return tr
}

// do sends req and returns the status and body of the reply.
func (tr *testReceiver) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	tr.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (tr *testReceiver) takeEvents() []Event {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	ev := tr.events
	tr.events = nil
	return ev
}

func payload(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hmacHex(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// sigMode says how a test request is signed.
type sigMode int

const (
	sigValid   sigMode = iota
	sigWrong           // signed with another secret
	sigGarbage         // not even hex
	sigMissing         // no signature or token header
)

// request builds a delivery as provider p sends it. secret is the key used by sigValid.
func request(t *testing.T, p Provider, event string, body []byte, secret string, mode sigMode, delivery string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/hooks/git", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sig := ""
	switch mode {
	case sigValid:
		sig = hmacHex(secret, body)
	case sigWrong:
		sig = hmacHex(secret+"-not", body)
	case sigGarbage:
		sig = "not-hex!"
	}
	if p == GitLab {
		sig = secret
		if mode == sigWrong {
			sig = secret + "-not"
		}
	}
	set := func(k, v string) {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	if mode == sigMissing {
		sig = ""
	}
	switch p {
	case GitHub:
		set("X-GitHub-Event", event)
		set("X-GitHub-Delivery", delivery)
		if sig != "" {
			set("X-Hub-Signature-256", "sha256="+sig)
		}
	case GitLab:
		set("X-Gitlab-Event", event)
		set("X-Gitlab-Event-UUID", delivery)
		set("X-Gitlab-Token", sig)
	case Gitea:
		// Gitea also sends GitHub's and Gogs' headers; the Gitea ones must win.
		set("X-Gitea-Event", event)
		set("X-Gitea-Delivery", delivery)
		set("X-Gitea-Signature", sig)
		set("X-GitHub-Event", event)
		set("X-Gogs-Event", event)
	case Forgejo:
		set("X-Forgejo-Event", event)
		set("X-Forgejo-Delivery", delivery)
		set("X-Forgejo-Signature", sig)
		set("X-Gitea-Event", event)
		set("X-Gitea-Delivery", delivery)
		set("X-Gitea-Signature", sig)
	}
	return req
}

func TestSignatures(t *testing.T) {
	type provCase struct {
		p        Provider
		event    string
		file     string
		secret   string // the secret of the repository the payload names
		other    string // the secret of another followed repository
		wantRepo string
	}
	provs := []provCase{
		{GitHub, "push", "github-push.json", "gh-secret", "hw-secret", "github.com/Acme/deployment-configurations"},
		{GitLab, "Push Hook", "gitlab-push.json", "gl-secret", "gl-hw-secret", "gitlab.example.com/platform/team/deployment-configurations"},
		{Gitea, "push", "gitea-push.json", "gitea-secret", "gitea-hw-secret", "git.example.com/acme/deployment-configurations"},
		{Forgejo, "push", "forgejo-push.json", "fj-secret", "gh-secret", "codeberg.org/Team/Deploy"},
	}
	for _, pc := range provs {
		body := payload(t, pc.file)
		tests := []struct {
			name      string
			secret    string
			mode      sigMode
			wantCode  int
			wantEvent bool
		}{
			{"valid", pc.secret, sigValid, http.StatusAccepted, true},
			{"invalid", pc.secret, sigWrong, http.StatusUnauthorized, false},
			{"garbage", pc.secret, sigGarbage, http.StatusUnauthorized, false},
			{"missing", pc.secret, sigMissing, http.StatusUnauthorized, false},
			// Signed correctly, but with the secret of another followed repository.
			{"wrong repo", pc.other, sigValid, http.StatusUnauthorized, false},
		}
		for _, tc := range tests {
			if pc.p == GitLab && tc.mode == sigGarbage {
				continue // a token has no format to get wrong
			}
			t.Run(string(pc.p)+"/"+tc.name, func(t *testing.T) {
				tr := newTestReceiver(t, nil)
				code, reply := tr.do(t, request(t, pc.p, pc.event, body, tc.secret, tc.mode, "d-1"))
				if code != tc.wantCode {
					t.Fatalf("status %d (%q), want %d; log:\n%s", code, reply, tc.wantCode, tr.logs)
				}
				evs := tr.takeEvents()
				if !tc.wantEvent {
					if len(evs) != 0 {
						t.Fatalf("events %+v, want none", evs)
					}
					return
				}
				if reply != replyAccepted {
					t.Errorf("reply %q, want %q", reply, replyAccepted)
				}
				if len(evs) != 1 {
					t.Fatalf("got %d events, want 1", len(evs))
				}
				if evs[0].Provider != pc.p || evs[0].RepoURL != pc.wantRepo || evs[0].DeliveryID != "d-1" || evs[0].Kind != KindPush {
					t.Errorf("event %+v, want provider %s, repo %s, delivery d-1, kind push", evs[0], pc.p, pc.wantRepo)
				}
			})
		}
	}
}

func TestPushEvents(t *testing.T) {
	tests := []struct {
		p      Provider
		event  string
		file   string
		secret string
		want   Event
	}{
		{GitHub, "push", "github-push.json", "gh-secret", Event{
			Provider: GitHub, RepoURL: "github.com/Acme/deployment-configurations", Kind: KindPush,
			Ref: "refs/heads/main", Before: "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
			After: "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", DeliveryID: "d",
		}},
		{GitHub, "push", "github-push-delete.json", "gh-secret", Event{
			Provider: GitHub, RepoURL: "github.com/Acme/deployment-configurations", Kind: KindPush,
			Ref: "refs/heads/feature/old", Before: "a10867b14bb761a232cd80139fbd4c0d33264240",
			After: "0000000000000000000000000000000000000000", Deleted: true, DeliveryID: "d",
		}},
		{GitLab, "Push Hook", "gitlab-push.json", "gl-secret", Event{
			Provider: GitLab, RepoURL: "gitlab.example.com/platform/team/deployment-configurations", Kind: KindPush,
			Ref: "refs/heads/main", Before: "95790bf891e76fee5e1747ab589903a6a1f80f22",
			After: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", DeliveryID: "d",
		}},
		{GitLab, "Tag Push Hook", "gitlab-tag_push.json", "gl-hw-secret", Event{
			Provider: GitLab, RepoURL: "gitlab.example.com/Acme/hello-world", Kind: KindPush,
			Ref: "refs/tags/v1.0.0", Before: "0000000000000000000000000000000000000000",
			After: "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7", DeliveryID: "d",
		}},
		{Gitea, "push", "gitea-push.json", "gitea-secret", Event{
			Provider: Gitea, RepoURL: "git.example.com/acme/deployment-configurations", Kind: KindPush,
			Ref: "refs/heads/main", Before: "28e1879d029cb852e4844d9c718537df08844e03",
			After: "bffeb74224043ba2feb48d137756c8a9331c449a", DeliveryID: "d",
		}},
		{Forgejo, "push", "forgejo-push.json", "fj-secret", Event{
			Provider: Forgejo, RepoURL: "codeberg.org/Team/Deploy", Kind: KindPush,
			Ref: "refs/heads/main", Before: "0000000000000000000000000000000000000000",
			After: "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00", DeliveryID: "d",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tr := newTestReceiver(t, nil)
			code, _ := tr.do(t, request(t, tc.p, tc.event, payload(t, tc.file), tc.secret, sigValid, "d"))
			if code != http.StatusAccepted {
				t.Fatalf("status %d; log:\n%s", code, tr.logs)
			}
			if diff := cmp.Diff([]Event{tc.want}, tr.takeEvents()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPullRequestEvents(t *testing.T) {
	tests := []struct {
		p      Provider
		event  string
		file   string
		secret string
		want   Event
	}{
		{GitHub, "pull_request", "github-pull_request.json", "hw-secret", Event{
			Provider: GitHub, RepoURL: "github.com/Acme/hello-world", Kind: KindPullRequest, Ref: "refs/heads/main",
			PullRequest: &PullRequest{Number: 42, Action: "synchronize", HeadSHA: "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
				HeadBranch: "feature/bonjour", BaseBranch: "main"},
			DeliveryID: "d",
		}},
		{GitLab, "Merge Request Hook", "gitlab-merge_request.json", "gl-hw-secret", Event{
			Provider: GitLab, RepoURL: "gitlab.example.com/Acme/hello-world", Kind: KindPullRequest, Ref: "refs/heads/main",
			PullRequest: &PullRequest{Number: 7, Action: "update", HeadSHA: "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
				HeadBranch: "feature/bonjour", BaseBranch: "main"},
			DeliveryID: "d",
		}},
		{Gitea, "pull_request", "gitea-pull_request.json", "gitea-hw-secret", Event{
			Provider: Gitea, RepoURL: "git.example.com/acme/hello-world", Kind: KindPullRequest, Ref: "refs/heads/main",
			PullRequest: &PullRequest{Number: 3, Action: "synchronized", HeadSHA: "bffeb74224043ba2feb48d137756c8a9331c449a",
				HeadBranch: "feature/bonjour", BaseBranch: "main"},
			DeliveryID: "d",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			tr := newTestReceiver(t, nil)
			code, _ := tr.do(t, request(t, tc.p, tc.event, payload(t, tc.file), tc.secret, sigValid, "d"))
			if code != http.StatusAccepted {
				t.Fatalf("status %d; log:\n%s", code, tr.logs)
			}
			if diff := cmp.Diff([]Event{tc.want}, tr.takeEvents()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnknownRepositoryLooksAccepted(t *testing.T) {
	tr := newTestReceiver(t, nil)
	body := bytes.ReplaceAll(payload(t, "github-push.json"), []byte("Acme/deployment-configurations"), []byte("Acme/elsewhere"))
	code, reply := tr.do(t, request(t, GitHub, "push", body, "gh-secret", sigValid, "d-1"))
	if code != http.StatusAccepted || reply != replyAccepted {
		t.Errorf("got %d %q, want 202 %q as for an accepted delivery", code, reply, replyAccepted)
	}
	if evs := tr.takeEvents(); len(evs) != 0 {
		t.Errorf("events %+v, want none", evs)
	}
	if !strings.Contains(tr.logs.String(), "repository not followed") {
		t.Errorf("no log line for the unknown repository:\n%s", tr.logs)
	}

	// A followed repository without a secret is treated as not followed, whatever the
	// signature: an empty HMAC key would be anyone's.
	body = bytes.ReplaceAll(payload(t, "github-push.json"), []byte("Acme/deployment-configurations"), []byte("Acme/no-secret"))
	code, reply = tr.do(t, request(t, GitHub, "push", body, "", sigValid, "d-2"))
	if code != http.StatusAccepted || reply != replyAccepted || len(tr.takeEvents()) != 0 {
		t.Errorf("repo without secret: got %d %q and maybe an event, want 202 and nothing", code, reply)
	}
}

func TestReplay(t *testing.T) {
	tr := newTestReceiver(t, func(c *Config) { c.ReplayWindow = time.Hour; c.ReplayEntries = 2 })
	body := payload(t, "gitea-push.json")
	send := func(delivery string) int {
		t.Helper()
		code, reply := tr.do(t, request(t, Gitea, "push", body, "gitea-secret", sigValid, delivery))
		if code != http.StatusAccepted || reply != replyAccepted {
			t.Fatalf("delivery %q: got %d %q", delivery, code, reply)
		}
		return len(tr.takeEvents())
	}
	steps := []struct {
		delivery string
		advance  time.Duration
		want     int
	}{
		{"a", 0, 1},
		{"a", time.Minute, 0}, // replayed
		{"b", 0, 1},           //
		{"a", 0, 0},           // still remembered
		{"c", 0, 1},           // bound of 2 entries pushes "a" out
		{"a", 0, 1},           // forgotten, so new again
		{"b", time.Hour, 1},   // window passed
		{"", 0, 1},            // no delivery ID: the body is the key
		{"", 0, 0},            // same body again
	}
	for i, s := range steps {
		tr.now = tr.now.Add(s.advance)
		if got := send(s.delivery); got != s.want {
			t.Errorf("step %d (delivery %q): %d events, want %d", i, s.delivery, got, s.want)
		}
	}
	if !strings.Contains(tr.logs.String(), "delivery already seen") {
		t.Errorf("no log line for the replay:\n%s", tr.logs)
	}

	// A replay with a bad signature is refused, not ignored, and does not poison the cache.
	tr2 := newTestReceiver(t, nil)
	if code, _ := tr2.do(t, request(t, Gitea, "push", body, "gitea-secret", sigWrong, "x")); code != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", code)
	}
	if code, _ := tr2.do(t, request(t, Gitea, "push", body, "gitea-secret", sigValid, "x")); code != http.StatusAccepted || len(tr2.takeEvents()) != 1 {
		t.Errorf("a refused delivery ID blocked the genuine one")
	}
}

func TestOversizedBody(t *testing.T) {
	tr := newTestReceiver(t, func(c *Config) { c.MaxBodyBytes = 512 })
	body := payload(t, "github-push.json") // about 2 KiB
	req := request(t, GitHub, "push", body, "gh-secret", sigValid, "d")
	if code, _ := tr.do(t, req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("with Content-Length: status %d, want 413", code)
	}
	req = request(t, GitHub, "push", body, "gh-secret", sigValid, "d")
	req.ContentLength = -1 // chunked: the limit must hold while reading
	req.Body = io.NopCloser(bytes.NewReader(body))
	if code, _ := tr.do(t, req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: status %d, want 413", code)
	}
	if evs := tr.takeEvents(); len(evs) != 0 {
		t.Errorf("events %+v, want none", evs)
	}

	// The default is 1 MiB.
	tr = newTestReceiver(t, nil)
	big := bytes.Repeat([]byte(" "), DefaultMaxBodyBytes+1)
	if code, _ := tr.do(t, request(t, GitHub, "push", big, "gh-secret", sigValid, "d")); code != http.StatusRequestEntityTooLarge {
		t.Errorf("default limit: status %d, want 413", code)
	}
}

func TestOtherRequests(t *testing.T) {
	tr := newTestReceiver(t, nil)
	tests := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"github ping", func() *http.Request {
			return request(t, GitHub, "ping", []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`), "gh-secret", sigValid, "p")
		}, http.StatusOK},
		{"github ping unsigned", func() *http.Request {
			return request(t, GitHub, "ping", []byte(`{"zen":"x"}`), "", sigMissing, "p")
		}, http.StatusOK},
		{"github issues", func() *http.Request {
			return request(t, GitHub, "issues", []byte(`{}`), "gh-secret", sigValid, "i")
		}, http.StatusOK},
		{"gitlab note", func() *http.Request {
			return request(t, GitLab, "Note Hook", []byte(`{"object_kind":"note"}`), "gl-secret", sigValid, "n")
		}, http.StatusOK},
		{"gitea create", func() *http.Request {
			return request(t, Gitea, "create", []byte(`{}`), "gitea-secret", sigValid, "c")
		}, http.StatusOK},
		{"no provider header", func() *http.Request {
			return httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}"))
		}, http.StatusBadRequest},
		{"GET", func() *http.Request {
			r := request(t, GitHub, "push", nil, "gh-secret", sigValid, "g")
			r.Method = http.MethodGet
			return r
		}, http.StatusMethodNotAllowed},
		{"malformed push", func() *http.Request {
			return request(t, GitHub, "push", []byte(`{"ref":`), "gh-secret", sigValid, "m")
		}, http.StatusBadRequest},
		{"push without repository", func() *http.Request {
			b := []byte(`{"ref":"refs/heads/main","before":"` + strings.Repeat("0", 40) + `","after":"` + strings.Repeat("1", 40) + `"}`)
			return request(t, GitHub, "push", b, "gh-secret", sigValid, "m")
		}, http.StatusBadRequest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, reply := tr.do(t, tc.req()); code != tc.want {
				t.Errorf("status %d (%q), want %d", code, reply, tc.want)
			}
			if evs := tr.takeEvents(); len(evs) != 0 {
				t.Errorf("events %+v, want none", evs)
			}
		})
	}
}

func TestFormEncodedPayload(t *testing.T) {
	tr := newTestReceiver(t, nil)
	body := []byte("payload=" + url.QueryEscape(string(payload(t, "github-push.json"))))
	req := request(t, GitHub, "push", body, "gh-secret", sigValid, "f")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if code, _ := tr.do(t, req); code != http.StatusAccepted {
		t.Fatalf("status %d; log:\n%s", code, tr.logs)
	}
	if evs := tr.takeEvents(); len(evs) != 1 || evs[0].After != "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c" {
		t.Errorf("events %+v", evs)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Secret: func(string) ([]byte, bool) { return nil, false }, OnEvent: func(Event) {}}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"zero values are defaults", func(*Config) {}, ""},
		{"no lookup", func(c *Config) { c.Secret = nil }, "Secret lookup is required"},
		{"no callback", func(c *Config) { c.OnEvent = nil }, "OnEvent callback is required"},
		{"negative size", func(c *Config) { c.MaxBodyBytes = -1 }, "MaxBodyBytes -1 is negative"},
		{"negative window", func(c *Config) { c.ReplayWindow = -time.Second }, "ReplayWindow -1s is negative"},
		{"negative entries", func(c *Config) { c.ReplayEntries = -1 }, "ReplayEntries -1 is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			if got := fmt.Sprint(err); (tc.wantErr == "") != (err == nil) || !strings.Contains(got, tc.wantErr) {
				t.Errorf("Validate() = %v, want error containing %q", err, tc.wantErr)
			}
			if _, nerr := New(c, nil); (nerr == nil) != (err == nil) {
				t.Errorf("New error %v disagrees with Validate %v", nerr, err)
			}
		})
	}
	r, err := New(ok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.maxBody != DefaultMaxBodyBytes || r.replay.window != DefaultReplayWindow || r.replay.max != DefaultReplayEntries {
		t.Errorf("defaults not applied: %d %s %d", r.maxBody, r.replay.window, r.replay.max)
	}
}

// TestRepositoryChoice checks that the repository an event is reported for is the one whose
// secret verified it, whatever else the payload names.
func TestRepositoryChoice(t *testing.T) {
	swap := func(clone, ssh string) []byte {
		return []byte(`{"ref":"refs/heads/main","before":"` + strings.Repeat("1", 40) + `","after":"` + strings.Repeat("2", 40) +
			`","repository":{"clone_url":"` + clone + `","ssh_url":"` + ssh + `"}}`)
	}
	tr := newTestReceiver(t, nil)
	// Names hello-world first, signed with the secret of deployment-configurations: refused.
	body := swap("https://github.com/Acme/hello-world.git", "git@github.com:Acme/deployment-configurations.git")
	if code, _ := tr.do(t, request(t, GitHub, "push", body, "gh-secret", sigValid, "1")); code != http.StatusUnauthorized {
		t.Errorf("borrowed secret: status %d, want 401", code)
	}
	// An unknown URL first and a followed one second: the followed one is used.
	body = swap("https://github.com/Acme/unknown.git", "git@github.com:Acme/hello-world.git")
	if code, _ := tr.do(t, request(t, GitHub, "push", body, "hw-secret", sigValid, "2")); code != http.StatusAccepted {
		t.Errorf("second candidate: status %d, want 202", code)
	}
	if evs := tr.takeEvents(); len(evs) != 1 || evs[0].RepoURL != "github.com/Acme/hello-world" {
		t.Errorf("events %+v, want one for github.com/Acme/hello-world", evs)
	}
}

// TestMissingSignatureSameForAnyRepository checks that an unsigned delivery gets 401 whether
// or not the repository is followed, so it cannot be used to probe for repositories.
func TestMissingSignatureSameForAnyRepository(t *testing.T) {
	tr := newTestReceiver(t, nil)
	known := payload(t, "github-push.json")
	unknown := bytes.ReplaceAll(known, []byte("Acme/deployment-configurations"), []byte("Acme/elsewhere"))
	for name, body := range map[string][]byte{"known": known, "unknown": unknown} {
		if code, _ := tr.do(t, request(t, GitHub, "push", body, "", sigMissing, name)); code != http.StatusUnauthorized {
			t.Errorf("%s repository, no signature: status %d, want 401", name, code)
		}
	}
}

// TestForgejoWithGiteaHeadersOnly checks that a Forgejo delivery is verified by whichever
// signature header it carries.
func TestForgejoWithGiteaHeadersOnly(t *testing.T) {
	tr := newTestReceiver(t, nil)
	body := payload(t, "forgejo-push.json")
	req := request(t, Forgejo, "push", body, "fj-secret", sigValid, "f")
	req.Header.Del("X-Forgejo-Signature")
	req.Header.Del("X-Forgejo-Delivery")
	if code, _ := tr.do(t, req); code != http.StatusAccepted {
		t.Fatalf("status %d; log:\n%s", code, tr.logs)
	}
	if evs := tr.takeEvents(); len(evs) != 1 || evs[0].Provider != Forgejo || evs[0].DeliveryID != "f" {
		t.Errorf("events %+v", evs)
	}
}
