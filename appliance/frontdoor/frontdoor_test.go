package frontdoor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// syncBuffer is a log sink tests can read while the front door writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is a running front door on a fake clientset, its routing handler served by an
// httptest server, and a Resolve that maps Services to test backends.
type harness struct {
	t     *testing.T
	cs    *fake.Clientset
	fd    *FrontDoor
	srv   *httptest.Server // serves fd.Handler()
	logs  *syncBuffer
	mu    sync.Mutex
	addrs map[string]string // "namespace/service:port" → host:port
}

// newHarness starts a front door with objs in the fake API. mod may change the Config (listeners,
// CertDir, Handlers, Resolve = nil for the default resolver) before New.
func newHarness(t *testing.T, mod func(*Config), objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, cs: fake.NewClientset(objs...), logs: &syncBuffer{}, addrs: map[string]string{}}
	cfg := Config{
		Client:  h.cs,
		Logger:  slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Resolve: h.resolve,
	}
	if mod != nil {
		mod(&cfg)
	}
	fd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.fd = fd
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- fd.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := fd.WaitReady(wctx); err != nil {
		t.Fatalf("front door not ready: %v", err)
	}
	h.srv = httptest.NewServer(fd.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) resolve(_ context.Context, ns, svc string, port networkingv1.ServiceBackendPort) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := ns + "/" + svc + ":" + portString(port)
	if a, ok := h.addrs[key]; ok {
		return a, nil
	}
	return "", fmt.Errorf("test resolver knows no %s", key)
}

// backend starts an echo server and makes ns/svc port 80 resolve to it.
func (h *harness) backend(ns, svc string) {
	h.t.Helper()
	name := ns + "/" + svc
	b := httptest.NewServer(echo(name))
	h.t.Cleanup(b.Close)
	h.route(ns, svc, 80, b.Listener.Addr().String())
}

func (h *harness) route(ns, svc string, port int, addr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addrs[fmt.Sprintf("%s/%s:%d", ns, svc, port)] = addr
}

// echoed is what an echo backend saw.
type echoed struct {
	Backend, URI, Host, XFF, XFProto, XFHost, RealIP, Forwarded string
}

func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{
			Backend: name, URI: r.RequestURI, Host: r.Host,
			XFF: strings.Join(r.Header.Values("X-Forwarded-For"), ","), XFProto: r.Header.Get("X-Forwarded-Proto"),
			XFHost: r.Header.Get("X-Forwarded-Host"), RealIP: r.Header.Get("X-Real-IP"), Forwarded: r.Header.Get("Forwarded"),
		})
	})
}

type reply struct {
	status int
	body   string
	header http.Header
	echo   echoed
}

// get requests path on the handler with the given Host header.
func (h *harness) get(host, path string, hdr ...string) reply {
	h.t.Helper()
	return do(h.t, h.srv.Client(), h.srv.URL, host, path, hdr...)
}

func do(t *testing.T, c *http.Client, base, host, path string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return exchange(t, c, req)
}

// send makes a request with any method and body to the handler.
func (h *harness) send(method, host, path, body string) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Host = host
	return exchange(h.t, h.srv.Client(), req)
}

func exchange(t *testing.T, c *http.Client, req *http.Request) reply {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", req.Method, req.Host, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, body: string(b), header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		json.Unmarshal(b, &r.echo)
	}
	return r
}

// servedBy is the backend that answered, or the status code when none did.
func (r reply) servedBy() string {
	if r.echo.Backend != "" {
		return r.echo.Backend
	}
	return fmt.Sprint(r.status)
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRoutingByHostAndPath(t *testing.T) {
	shop := newIngress("shop", "web", 1,
		rule("shop.example.com", prefix("/", "web"), prefix("/api", "api"), exact("/api/health", "health")),
		rule("*.preview.example.com", prefix("/", "preview")))
	login := newIngress("auth", "login", 2, rule("auth.example.com", exact("/login", "login")))
	h := newHarness(t, nil, shop, login)
	for _, b := range [][2]string{{"shop", "web"}, {"shop", "api"}, {"shop", "health"}, {"shop", "preview"}, {"auth", "login"}} {
		h.backend(b[0], b[1])
	}
	for _, tc := range []struct{ host, path, want string }{
		{"shop.example.com", "/", "shop/web"},
		{"shop.example.com", "/cart?id=1", "shop/web"},
		{"shop.example.com", "/api", "shop/api"},
		{"shop.example.com", "/api/v1/items", "shop/api"},
		{"shop.example.com", "/apiary", "shop/web"},
		{"shop.example.com", "/api/health", "shop/health"},
		{"shop.example.com", "/api/health/deep", "shop/api"},
		{"shop.example.com", "/web/../api/x", "shop/api"},
		{"SHOP.Example.com:8080", "/api", "shop/api"},
		{"shop.example.com.", "/api", "shop/api"},
		{"pr-12.preview.example.com", "/", "shop/preview"},
		{"a.pr-12.preview.example.com", "/", "404"},
		{"preview.example.com", "/", "404"},
		{"auth.example.com", "/login", "auth/login"},
		{"auth.example.com", "/login/x", "404"},
		{"nobody.example.com", "/", "404"},
	} {
		if got := h.get(tc.host, tc.path).servedBy(); got != tc.want {
			t.Errorf("GET %s%s served by %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
	if r := h.get("shop.example.com", "/cart?id=1"); r.echo.URI != "/cart?id=1" || r.echo.Host != "shop.example.com" {
		t.Errorf("backend saw URI %q Host %q; want the original /cart?id=1 and shop.example.com", r.echo.URI, r.echo.Host)
	}

	r := h.get("nobody.example.com", "/")
	if r.status != http.StatusNotFound || !strings.Contains(r.body, `no Ingress serves host "nobody.example.com"`) || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("unknown host: %d %q (%s); want 404 text naming the host", r.status, r.body, r.header.Get("Content-Type"))
	}
	r = h.get("auth.example.com", "/login/x")
	if r.status != http.StatusNotFound || !strings.Contains(r.body, `no Ingress serves path "/login/x" on host "auth.example.com"`) {
		t.Errorf("unknown path: %d %q", r.status, r.body)
	}
}

func TestDefaultBackend(t *testing.T) {
	def := newIngress("ops", "default", 1)
	def.Spec.DefaultBackend = ptr.To(svcBackend("fallback", 80))
	app := newIngress("app", "web", 2, rule("app.example.com", exact("/", "web")))
	h := newHarness(t, nil, def, app)
	h.backend("ops", "fallback")
	h.backend("app", "web")
	for _, tc := range []struct{ host, path, want string }{
		{"app.example.com", "/", "app/web"},
		{"app.example.com", "/elsewhere", "ops/fallback"},
		{"unknown.example.com", "/", "ops/fallback"},
		{"", "/", "ops/fallback"},
	} {
		if got := h.get(tc.host, tc.path).servedBy(); got != tc.want {
			t.Errorf("GET %s%s served by %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestBackendErrorsAre502(t *testing.T) {
	res := newIngress("res", "bucket", 1, rule("bucket.example.com", networkingv1.HTTPIngressPath{
		Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
		Backend: networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"}}}))
	h := newHarness(t, nil,
		newIngress("down", "web", 1, rule("down.example.com", prefix("/", "web"))),
		newIngress("gone", "web", 1, rule("gone.example.com", prefix("/", "web"))),
		res)
	// A backend that was listening and is not any more.
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := dead.Listener.Addr().String()
	dead.Close()
	h.route("down", "web", 80, addr)

	for _, tc := range []struct{ host, want string }{
		{"down.example.com", "Service down/web port 80, refused the connection"},
		{"gone.example.com", "cannot route to Service gone/web port 80: test resolver knows no gone/web:80"},
		{"bucket.example.com", "routes this request to resource Bucket/b; the gluebox front door serves only Service backends"},
	} {
		r := h.get(tc.host, "/")
		if r.status != http.StatusBadGateway || !strings.Contains(r.body, tc.want) {
			t.Errorf("GET %s: %d %q; want 502 containing %q", tc.host, r.status, r.body, tc.want)
		}
		if strings.Contains(r.body, addr) {
			t.Errorf("GET %s: 502 body reveals the backend address %s", tc.host, addr)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	h := newHarness(t, nil, newIngress("app", "web", 1, rule("app.example.com", prefix("/", "web"))))
	h.backend("app", "web")
	r := h.get("app.example.com", "/", "X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.example.com", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6")
	want := echoed{Backend: "app/web", URI: "/", Host: "app.example.com", XFF: "127.0.0.1", XFProto: "http", XFHost: "app.example.com", RealIP: "127.0.0.1"}
	if r.echo != want {
		t.Errorf("backend saw %+v\nwant %+v (client-sent forwarding headers must not pass)", r.echo, want)
	}
}

func TestRoutesFollowIngressChanges(t *testing.T) {
	h := newHarness(t, nil)
	h.backend("app", "v1")
	h.backend("app", "v2")
	ctx := context.Background()
	ings := h.cs.NetworkingV1().Ingresses("app")

	if got := h.get("app.example.com", "/").status; got != http.StatusNotFound {
		t.Fatalf("before any Ingress: %d, want 404", got)
	}
	ing, err := ings.Create(ctx, newIngress("app", "web", 0, rule("app.example.com", prefix("/", "v1"))), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new Ingress to route", func() bool { return h.get("app.example.com", "/").servedBy() == "app/v1" })

	ing.Spec.Rules = []networkingv1.IngressRule{rule("app.example.com", prefix("/", "v2")), rule("new.example.com", prefix("/", "v1"))}
	if _, err := ings.Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed Ingress to route", func() bool {
		return h.get("app.example.com", "/").servedBy() == "app/v2" && h.get("new.example.com", "/").servedBy() == "app/v1"
	})
	want := []Route{
		{Host: "app.example.com", Path: "/", PathType: PathPrefix, Namespace: "app", Ingress: "web", Service: "v2", Port: "80"},
		{Host: "new.example.com", Path: "/", PathType: PathPrefix, Namespace: "app", Ingress: "web", Service: "v1", Port: "80"},
	}
	if got := h.fd.Routes(); !equalRoutes(got, want) {
		t.Errorf("Routes() = %+v\nwant %+v", got, want)
	}

	if err := ings.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted Ingress to stop routing", func() bool {
		return h.get("app.example.com", "/").status == http.StatusNotFound && len(h.fd.Routes()) == 0
	})
	if logs := h.logs.String(); strings.Count(logs, "routes changed") != 3 {
		t.Errorf("want one log line per routing-table change (3), got:\n%s", logs)
	}
}

func equalRoutes(a, b []Route) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestIngressClassFiltering(t *testing.T) {
	mk := func(host string, class *string, annot string) *networkingv1.Ingress {
		ing := newIngress("ns", strings.Split(host, ".")[0], 1, rule(host, prefix("/", "web")))
		ing.Spec.IngressClassName = class
		if annot != "" {
			ing.Annotations = map[string]string{legacyClassAnnotation: annot}
		}
		return ing
	}
	h := newHarness(t, nil,
		mk("none.example.com", nil, ""),
		mk("empty.example.com", ptr.To(""), ""),
		mk("ours.example.com", ptr.To("gluebox"), ""),
		mk("theirs.example.com", ptr.To("nginx"), ""),
		mk("legacy-theirs.example.com", nil, "nginx"),
		mk("legacy-ours.example.com", nil, "gluebox"),
	)
	h.backend("ns", "web")
	for host, want := range map[string]string{
		"none.example.com": "ns/web", "empty.example.com": "ns/web", "ours.example.com": "ns/web", "legacy-ours.example.com": "ns/web",
		"theirs.example.com": "404", "legacy-theirs.example.com": "404",
	} {
		if got := h.get(host, "/").servedBy(); got != want {
			t.Errorf("GET %s served by %s, want %s", host, got, want)
		}
	}
}

func TestConflictIsResolvedAndLogged(t *testing.T) {
	h := newHarness(t, nil,
		newIngress("b-team", "aaa", 5, rule("shared.example.com", prefix("/", "newer"))),
		newIngress("a-team", "zzz", 1, rule("shared.example.com", prefix("/", "older"))))
	h.backend("a-team", "older")
	h.backend("b-team", "newer")
	if got := h.get("shared.example.com", "/").servedBy(); got != "a-team/older" {
		t.Errorf("shared host served by %s, want the older Ingress's a-team/older", got)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "conflict: host shared.example.com/ (Prefix) is claimed by Ingress a-team/zzz and b-team/aaa; a-team/zzz wins") {
		t.Errorf("conflict not logged clearly:\n%s", logs)
	}
}

func TestHandlersServedOnEveryHost(t *testing.T) {
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "webhook %s", r.URL.Path) })
	h := newHarness(t, func(c *Config) { c.Handlers = map[string]http.Handler{"/.gluebox/webhook/": hook} },
		newIngress("app", "web", 1, rule("app.example.com", prefix("/", "web"))))
	h.backend("app", "web")
	for _, tc := range []struct{ host, path, want string }{
		{"app.example.com", "/.gluebox/webhook", "webhook /.gluebox/webhook"},
		{"app.example.com", "/.gluebox/webhook/github", "webhook /.gluebox/webhook/github"},
		{"unknown.example.com", "/.gluebox/webhook", "webhook /.gluebox/webhook"},
		{"", "/.gluebox/webhook/gitea", "webhook /.gluebox/webhook/gitea"},
		{"app.example.com", "/.gluebox/webhookx", "app/web"}, // not below the prefix: routed
		{"app.example.com", "/", "app/web"},
	} {
		r := h.get(tc.host, tc.path)
		got := r.servedBy()
		if r.echo.Backend == "" && r.status == http.StatusOK {
			got = r.body
		}
		if got != tc.want {
			t.Errorf("GET %s%s = %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestWebsocketAndStreaming(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ws":
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			io.Copy(conn, brw) // echo until the client or the proxy hangs up
		case "/stream":
			fmt.Fprintln(w, "first")
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			fmt.Fprintln(w, "second")
		}
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	h := newHarness(t, func(c *Config) { c.HTTPAddr = "127.0.0.1:0" },
		newIngress("rt", "live", 1, rule("live.example.com", prefix("/", "live"))))
	h.route("rt", "live", 80, backend.Listener.Addr().String())

	// Streaming: the first line arrives while the backend is still holding the response open.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.fd.BoundHTTPAddr()+"/stream", nil)
	req.Host = "live.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first streamed line = %q, %v; the proxy buffers responses", line, err)
	}
	close(release)
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "second\n" {
		t.Errorf("rest of stream = %q, %v", rest, err)
	}
	resp.Body.Close()

	// Websocket: the upgrade passes through and bytes flow both ways.
	conn, err := net.DialTimeout("tcp", h.fd.BoundHTTPAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: live.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	cr := bufio.NewReader(conn)
	up, err := http.ReadResponse(cr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", up.Status)
	}
	fmt.Fprint(conn, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(cr, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("websocket echo = %q, %v", buf, err)
	}
}

func TestShutdownClosesOpenConnections(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(io.Discard, brw)
	}))
	t.Cleanup(backend.Close)
	cs := fake.NewClientset(newIngress("rt", "live", 1, rule("live.example.com", prefix("/", "live"))))
	fd, err := New(Config{Client: cs, HTTPAddr: "127.0.0.1:0", Resolve: func(context.Context, string, string, networkingv1.ServiceBackendPort) (string, error) {
		return backend.Listener.Addr().String(), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- fd.Run(ctx) }()
	if err := fd.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", fd.BoundHTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: live.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	cr := bufio.NewReader(conn)
	if up, err := http.ReadResponse(cr, nil); err != nil || up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", up, err)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if d := time.Since(start); d > shutdownTimeout+time.Second {
		t.Errorf("shutdown took %s, want at most %s", d, shutdownTimeout)
	}
	var ne net.Error
	if _, err := cr.ReadByte(); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("upgraded connection still open after shutdown (read: %v)", err)
	}
}

func TestForceSSLRedirect(t *testing.T) {
	secure := newIngress("app", "secure", 1, rule("secure.example.com", prefix("/", "web")))
	secure.Annotations = map[string]string{ForceSSLRedirectAnnotation: "true"}
	plain := newIngress("app", "plain", 1, rule("plain.example.com", prefix("/", "web")))
	h := newHarness(t, func(c *Config) {
		c.HTTPAddr, c.HTTPSAddr, c.CertDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	}, secure, plain)
	h.backend("app", "web")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + h.fd.BoundHTTPAddr()
	_, port, _ := net.SplitHostPort(h.fd.BoundHTTPSAddr())

	r := do(t, c, base, "secure.example.com", "/pay?x=1")
	if want := "https://secure.example.com:" + port + "/pay?x=1"; r.status != http.StatusPermanentRedirect || r.header.Get("Location") != want {
		t.Errorf("HTTP to a force-ssl-redirect Ingress: %d Location %q; want 308 to %s", r.status, r.header.Get("Location"), want)
	}
	if got := do(t, c, base, "plain.example.com", "/").servedBy(); got != "app/web" {
		t.Errorf("HTTP to a plain Ingress served by %s, want app/web (no redirect)", got)
	}
}

// TestRunReportsAddressInUse checks that a Run whose address is taken fails with an error
// naming the address, the flag and the cause, and that Run, called again as the supervisor
// does, serves once the address is free.
func TestRunReportsAddressInUse(t *testing.T) {
	for _, tc := range []struct {
		flag string
		mod  func(c *Config, addr string)
	}{
		{"--http-addr", func(c *Config, addr string) { c.HTTPAddr = addr }},
		{"--https-addr", func(c *Config, addr string) { c.HTTPAddr, c.HTTPSAddr, c.CertDir = "127.0.0.1:0", addr, t.TempDir() }},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			addr := busy.Addr().String()
			cfg := Config{Client: fake.NewClientset()}
			tc.mod(&cfg, addr)
			fd, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = fd.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("Run = %v; want an error naming %s, %s and the cause", err, addr, tc.flag)
			}
			short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
			defer stop()
			if werr := fd.WaitReady(short); werr == nil {
				t.Error("WaitReady = nil after a failed Run")
			}

			busy.Close() // the address is free: the next Run serves on it
			rctx, rcancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- fd.Run(rctx) }()
			if err := fd.WaitReady(ctx); err != nil {
				t.Fatalf("second Run not ready: %v", err)
			}
			bound := fd.BoundHTTPAddr()
			if tc.flag == "--https-addr" {
				bound = fd.BoundHTTPSAddr()
			}
			if bound != addr {
				t.Errorf("second Run listens on %s, want %s", bound, addr)
			}
			if err := fd.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
				t.Errorf("a concurrent Run = %v, want it refused", err)
			}
			rcancel()
			if err := <-done; err != nil {
				t.Errorf("second Run after its stop = %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cs := fake.NewClientset()
	ok := http.NotFoundHandler()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{}, "client is required"},
		{"bad http addr", Config{Client: cs, HTTPAddr: "80"}, `--http-addr "80" is not host:port`},
		{"bad https port", Config{Client: cs, HTTPSAddr: ":99999", CertDir: "/x"}, `--https-addr ":99999" has no valid port`},
		{"same addr", Config{Client: cs, HTTPAddr: ":8080", HTTPSAddr: ":8080", CertDir: "/x"}, "both :8080"},
		{"https without cert dir", Config{Client: cs, HTTPSAddr: ":443"}, "CertDir"},
		{"relative cert dir", Config{Client: cs, HTTPSAddr: ":443", CertDir: "certs"}, "absolute"},
		{"negative resync", Config{Client: cs, ResyncPeriod: -time.Second}, "ResyncPeriod"},
		{"handler outside /.gluebox/", Config{Client: cs, Handlers: map[string]http.Handler{"/webhook": ok}}, "must start with /.gluebox/"},
		{"handler on /.gluebox/ itself", Config{Client: cs, Handlers: map[string]http.Handler{"/.gluebox/": ok}}, "must start with /.gluebox/"},
		{"unclean handler prefix", Config{Client: cs, Handlers: map[string]http.Handler{"/.gluebox/../app": ok}}, "not a clean path"},
		{"nil handler", Config{Client: cs, Handlers: map[string]http.Handler{"/.gluebox/webhook": nil}}, "nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := (Config{Client: cs}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}
