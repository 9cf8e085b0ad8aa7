package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func newTestConsole(t *testing.T, cfg Config) (*Console, *httptest.Server) {
	t.Helper()
	if cfg.Password == nil {
		cfg.Password = func(context.Context) ([]byte, error) { return []byte("s3cret"), nil }
	}
	cfg.Tools = append(cfg.Tools, Tool{Prefix: "/metrics/", Title: "Metrics", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := r.Cookie(CookieName); err != nil {
			io.WriteString(w, "tool ok")
			return
		}
		io.WriteString(w, "tool ok (cookie leaked)")
	})})
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return c, srv
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, u string, cookie *http.Cookie, form url.Values, accept string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func session(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == CookieName && c.Value != "" {
			return c
		}
	}
	return nil
}

func TestLoginGatesTools(t *testing.T) {
	c, srv := newTestConsole(t, Config{})
	resp, _ := do(t, "GET", srv.URL+"/metrics/vmui/", nil, nil, "text/html")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2Fmetrics%2Fvmui%2F" {
		t.Fatalf("unauthenticated page: %s %s", resp.Status, resp.Header.Get("Location"))
	}
	if resp, _ := do(t, "GET", srv.URL+"/metrics/api/v1/query", nil, nil, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated API call: %s", resp.Status)
	}

	resp, body := do(t, "POST", srv.URL+"/login", nil, url.Values{"password": {"wrong"}, "next": {"/metrics/vmui/"}}, "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong password") || session(resp) != nil {
		t.Fatalf("wrong password: %s %q", resp.Status, body)
	}
	resp, _ = do(t, "POST", srv.URL+"/login", nil, url.Values{"password": {"s3cret"}, "next": {"/metrics/vmui/"}}, "")
	ck := session(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/metrics/vmui/" || ck == nil {
		t.Fatalf("login: %s %s %v", resp.Status, resp.Header.Get("Location"), resp.Cookies())
	}
	if !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v lacks HttpOnly, Secure or SameSite=Strict", ck)
	}
	if resp, body := do(t, "GET", srv.URL+"/metrics/vmui/", ck, nil, "text/html"); resp.StatusCode != 200 || body != "tool ok" {
		t.Fatalf("with a session: %s %q", resp.Status, body)
	}
	if resp, body := do(t, "GET", srv.URL+"/", ck, nil, "text/html"); resp.StatusCode != 200 || !strings.Contains(body, `href="/metrics/"`) {
		t.Fatalf("start page: %s %q", resp.Status, body)
	}

	tampered := *ck
	tampered.Value = ck.Value[:len(ck.Value)-2] + "AA"
	if resp, _ := do(t, "GET", srv.URL+"/metrics/x", &tampered, nil, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered session: %s", resp.Status)
	}
	c.now = func() time.Time { return time.Now().Add(DefaultSessionTTL + time.Minute) }
	if resp, _ := do(t, "GET", srv.URL+"/metrics/x", ck, nil, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired session: %s", resp.Status)
	}
	// A session of another process (another key) is not valid here.
	other, _ := New(Config{Password: c.cfg.Password})
	if other.validSession(ck.Value) {
		t.Fatal("a session signed by another console key was accepted")
	}
}

func TestFailedLoginsLockOut(t *testing.T) {
	c, srv := newTestConsole(t, Config{MaxFailures: 3, FailWindow: time.Minute})
	for i := 0; i < 3; i++ {
		if resp, _ := do(t, "POST", srv.URL+"/login", nil, url.Values{"password": {"guess"}}, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %s", i, resp.Status)
		}
	}
	resp, body := do(t, "POST", srv.URL+"/login", nil, url.Values{"password": {"s3cret"}}, "")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "too many failed logins") {
		t.Fatalf("after 3 failures: %s %q", resp.Status, body)
	}
	c.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if resp, _ := do(t, "POST", srv.URL+"/login", nil, url.Values{"password": {"s3cret"}}, ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %s", resp.Status)
	}
}

func TestPasswordUnavailableAndOpenRedirects(t *testing.T) {
	_, srv := newTestConsole(t, Config{Password: func(context.Context) ([]byte, error) { return nil, errors.New("store sealed") }})
	if resp, body := do(t, "POST", srv.URL+"/login", nil, url.Values{"password": {""}}, ""); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "secret store") {
		t.Fatalf("no password: %s %q", resp.Status, body)
	}
	for in, want := range map[string]string{"/metrics/": "/metrics/", "//evil.example/": "/", "https://evil.example/": "/", "/\\evil": "/", "": "/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := New(Config{Password: func(context.Context) ([]byte, error) { return nil, nil }, Tools: []Tool{{Prefix: "metrics"}}}); err == nil {
		t.Error("a tool without a /prefix/ was accepted")
	}
}

func TestRunServesHTTPSWithItsCA(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Addr: "127.0.0.1:0", CertDir: dir, Password: func(context.Context) ([]byte, error) { return []byte("pw"), nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(c.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get("https://" + c.Addr() + "/login")
	if err != nil {
		t.Fatalf("HTTPS with the console CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("GET /login: %s %v", resp.Status, resp.Header)
	}
}
