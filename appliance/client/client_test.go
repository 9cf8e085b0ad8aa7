package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gluebox/gluebox/appliance/alerts"
	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/console"
	"github.com/gluebox/gluebox/appliance/dashboards"
	"github.com/gluebox/gluebox/appliance/frontdoor"
	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
)

// testNode is the real route owners of a server, wired to real components in temp dirs where
// that is cheap; only what runs outside gluebox (the cluster, Alertmanager, vmalert, the
// observability stores) is stood in for.
type testNode struct {
	c       *Client
	sec     *secrets.Service
	rules   *fakeRules
	amCalls chan string // requests the fake Alertmanager received
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	root := t.TempDir()
	ctx := context.Background()
	n := &testNode{rules: &fakeRules{}, amCalls: make(chan string, 10)}

	sec, err := secrets.New(secrets.Config{Dir: filepath.Join(root, "secrets"), BackupDir: filepath.Join(root, "backups"), BackupInterval: -1, ScryptWorkFactor: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sec.Close() })
	n.sec = sec

	reg, err := registry.New(registry.Config{Dir: filepath.Join(root, "registry"), Addr: "127.0.0.1:0", GCInterval: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })

	eng, err := engine.New(engine.Config{Dir: filepath.Join(root, "gitops")}, engine.Deps{Applier: noCluster{}, Secrets: sec.Store()})
	if err != nil {
		t.Fatal(err)
	}

	cs := fake.NewClientset()
	syncer, err := kubesync.New(cs, sec.Store(), kubesync.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bindings, err := kubesync.NewBindings(syncer, filepath.Join(root, "state", "secret-bindings.json"))
	if err != nil {
		t.Fatal(err)
	}

	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.amCalls <- r.Method + " " + r.URL.RequestURI()
		switch {
		case r.URL.Path == "/api/v2/alerts":
			w.Write([]byte(`[{"labels":{"alertname":"DiskFull"},"status":{"state":"active"}}]`))
		case r.URL.Path == "/api/v2/silences" && r.Method == http.MethodPost:
			w.Write([]byte(`{"silenceID":"s-1"}`))
		default:
			w.Write([]byte(`[]`))
		}
	}))
	t.Cleanup(am.Close)
	alerting := alerts.NewService(&alerts.Client{BaseURL: am.URL}, n.rules, []string{"webhook"}, nil)
	alerting.SetUserRules(ctx, []byte("alerts:\n- name: Down\n  expr: up == 0\n- name: Bad\n  expr: up == 0\n  receiver: nowhere\n"))

	con, err := console.New(console.Config{Password: func(context.Context) ([]byte, error) { return []byte("pw"), nil },
		Tools: []console.Tool{{Prefix: "/metrics/", Title: "Metrics", Handler: http.NotFoundHandler()}}})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := frontdoor.New(frontdoor.Config{Client: cs})
	if err != nil {
		t.Fatal(err)
	}

	// The stores' clients point at a closed port: the argument checks must answer first.
	deadStore := "http://" + closedAddr(t)
	mc := &metrics.Client{BaseURL: deadStore}
	owners := []api.Registrar{sec, reg, eng, bindings, alerting, con, fd,
		metrics.NewAPI(mc), logs.NewAPI(&logs.Client{BaseURL: deadStore}), dashboards.NewAPI(mc, nil)}
	mux := http.NewServeMux()
	for _, o := range owners {
		o.Register(mux)
	}
	n.c = serve(t, mux)
	return n
}

// serve serves h on a unix socket, as `gluebox server` does, and returns a Client for it.
func serve(t *testing.T, h http.Handler) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return New(sock)
}

func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// noCluster is the engine's applier without a cluster; the routes tested here never apply.
type noCluster struct{}

func (noCluster) Apply(context.Context, apply.Set, []state.ObjRef) (apply.Result, error) {
	return apply.Result{}, errors.New("no cluster in this test")
}

func (noCluster) Delete(context.Context, apply.Set, []state.ObjRef) ([]string, error) {
	return nil, errors.New("no cluster in this test")
}

func (noCluster) Wait(context.Context, []state.ObjRef, time.Duration) error {
	return errors.New("no cluster in this test")
}

// fakeRules stands in for vmalert, which runs as a separate program.
type fakeRules struct{ user []alerts.UserRule }

func (f *fakeRules) UserRules() []alerts.UserRule { return f.user }

func (f *fakeRules) SetUserRules(_ context.Context, rules []alerts.UserRule) ([]*alerts.RuleError, error) {
	f.user = rules
	return nil, nil
}

// wantAPIError checks that err is the server's *api.Error with status and a message containing
// want, unwrapped and unchanged.
func wantAPIError(t *testing.T, err error, status int, want string) {
	t.Helper()
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *api.Error", err, err)
	}
	if ae.Status != status || !strings.Contains(ae.Message, want) {
		t.Fatalf("error = %d %q, want %d containing %q", ae.Status, ae.Message, status, want)
	}
	if err != error(ae) {
		t.Errorf("the *api.Error reached the caller wrapped: %v", err)
	}
}

func TestSecretsAndBackups(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	path := "secret/my-app/db" // a rest wildcard: the slashes stay
	v, err := n.c.SetSecret(ctx, path, secrets.SetRequest{Values: map[string]string{"URL": "postgres://x"}, By: "test"})
	if err != nil || v.Version != 1 || v.Path != path {
		t.Fatalf("SetSecret = %+v, %v", v, err)
	}
	got, err := n.c.Secret(ctx, path, SecretOptions{Key: "URL"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"URL": "postgres://x"}, got.Values); diff != "" {
		t.Errorf("Secret values (-want +got):\n%s", diff)
	}
	list, err := n.c.Secrets(ctx, "secret/my")
	if err != nil || len(list) != 1 || list[0].Path != path {
		t.Fatalf("Secrets = %+v, %v", list, err)
	}
	hist, err := n.c.SecretHistory(ctx, path)
	if err != nil || len(hist) != 1 {
		t.Fatalf("SecretHistory = %+v, %v", hist, err)
	}
	_, err = n.c.Secret(ctx, path, SecretOptions{Key: "NOPE"})
	wantAPIError(t, err, http.StatusNotFound, "key NOPE is not in "+path)

	m, err := n.c.CreateBackup(ctx, secrets.ByRequest{By: "test"})
	if err != nil || m.Secrets != 1 {
		t.Fatalf("CreateBackup = %+v, %v", m, err)
	}
	backups, err := n.c.Backups(ctx)
	if err != nil || len(backups) != 1 || backups[0].File != m.File {
		t.Fatalf("Backups = %+v, %v", backups, err)
	}
	rep, err := n.c.VerifyBackup(ctx, secrets.BackupFileRequest{File: m.File})
	if err != nil || rep.Secrets != 1 {
		t.Fatalf("VerifyBackup = %+v, %v", rep, err)
	}
	_, err = n.c.VerifyBackup(ctx, secrets.BackupFileRequest{File: "relative/path"})
	wantAPIError(t, err, http.StatusBadRequest, "relative path")
}

func TestRegistry(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	repos, err := n.c.RegistryRepositories(ctx)
	if err != nil || len(repos) != 0 {
		t.Fatalf("RegistryRepositories = %+v, %v", repos, err)
	}
	rep, err := n.c.RegistryGC(ctx, registry.GCOptions{DryRun: true})
	if err != nil || !rep.DryRun {
		t.Fatalf("RegistryGC = %+v, %v", rep, err)
	}
	_, err = n.c.RegistryGC(ctx, registry.GCOptions{Keep: []digest.Digest{"nonsense"}})
	wantAPIError(t, err, http.StatusBadRequest, `cannot keep "nonsense": not a digest`)
	var metricsText bytes.Buffer
	if err := n.c.RegistryMetrics(ctx, &metricsText); err != nil {
		t.Fatal(err)
	}
}

func TestGitOps(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	repo, err := n.c.Repo(ctx)
	if err != nil || repo.Config.URL != "" || repo.WebhookPath == "" {
		t.Fatalf("Repo = %+v, %v", repo, err)
	}
	_, err = n.c.SetRepo(ctx, engine.SetRepoRequest{})
	wantAPIError(t, err, http.StatusBadRequest, "url is required: gluebox repo set-config URL")
	apps, err := n.c.Apps(ctx)
	if err != nil || len(apps) != 0 {
		t.Fatalf("Apps = %+v, %v", apps, err)
	}
	_, err = n.c.App(ctx, "web", "prod")
	wantAPIError(t, err, http.StatusNotFound, "web")
	err = n.c.Manifest(ctx, "web", "prod", 0, &bytes.Buffer{})
	wantAPIError(t, err, http.StatusBadRequest, `revision "0" is not a positive number`)
	if err := n.c.SyncRepo(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAlerts(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	as, err := n.c.Alerts(ctx, []string{"alertname=DiskFull"})
	if err != nil || len(as) != 1 || as[0].Labels["alertname"] != "DiskFull" {
		t.Fatalf("Alerts = %+v, %v", as, err)
	}
	if got := <-n.amCalls; got != "GET /api/v2/alerts?filter=alertname%3D%22DiskFull%22" {
		t.Errorf("Alertmanager was asked %q", got)
	}
	_, err = n.c.Alerts(ctx, []string{"no operator"})
	wantAPIError(t, err, http.StatusBadRequest, "no operator")
	s, err := n.c.Silence(ctx, alerts.SilenceRequest{Matchers: []string{"alertname=DiskFull"}, Duration: time.Hour, CreatedBy: "test", Comment: "disk on order"})
	if err != nil || s.ID != "s-1" {
		t.Fatalf("Silence = %+v, %v", s, err)
	}
	_, err = n.c.Silence(ctx, alerts.SilenceRequest{Matchers: []string{"alertname=DiskFull"}})
	wantAPIError(t, err, http.StatusBadRequest, "a positive duration")
	ex, err := n.c.ExpireSilence(ctx, "s-1")
	if err != nil || ex.Expired != "s-1" {
		t.Fatalf("ExpireSilence = %+v, %v", ex, err)
	}
	_, err = n.c.ExpireSilence(ctx, "s?1")
	wantAPIError(t, err, http.StatusNotFound, `"s?1" is not a silence ID`)
	rules, err := n.c.AlertRules(ctx)
	if err != nil || len(rules.Default) == 0 || !slices.Equal(rules.User, []string{"Down"}) || !strings.Contains(strings.Join(rules.Dropped, "\n"), "nowhere") {
		t.Fatalf("AlertRules = %+v, %v", rules, err)
	}
}

func TestObservabilityArgumentErrors(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	_, err := n.c.MetricsQuery(ctx, metrics.QueryRequest{Query: "up", Time: "yesterday"})
	wantAPIError(t, err, http.StatusBadRequest, `time "yesterday" is neither RFC 3339 nor Unix seconds`)
	_, err = n.c.MetricsQueryRange(ctx, metrics.RangeRequest{Query: "up", Step: -time.Minute})
	wantAPIError(t, err, http.StatusBadRequest, `step "-1m0s" is not a duration`)
	_, err = n.c.Logs(ctx, logs.Request{App: "web"})
	wantAPIError(t, err, http.StatusBadRequest, "give both app and env")
	err = n.c.TailLogs(ctx, logs.Request{App: "Web!", Env: "prod"}, func(logs.LogLine) error { return nil })
	wantAPIError(t, err, http.StatusBadRequest, "Web!")
	_, err = n.c.Dashboard(ctx, "web", "prod", dashboards.Options{})
	wantAPIError(t, err, http.StatusServiceUnavailable, "the GitOps engine is not running")
}

func TestTailLogsStreamsLines(t *testing.T) {
	// The tail's answer format against its reader: lines, then an error the server met later.
	mux := http.NewServeMux()
	logs.RouteTail.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		enc.Encode(logs.LogLine{Pod: "web-1", Msg: "one"})
		enc.Encode(logs.LogLine{Pod: "web-1", Msg: "two"})
		enc.Encode(map[string]string{"error": "the log store went away"})
	})
	c := serve(t, mux)
	var got []string
	err := c.TailLogs(context.Background(), logs.Request{}, func(l logs.LogLine) error {
		got = append(got, l.Msg)
		return nil
	})
	if err == nil || err.Error() != "the log store went away" {
		t.Errorf("TailLogs error = %v", err)
	}
	if diff := cmp.Diff([]string{"one", "two"}, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	stop := errors.New("enough")
	err = c.TailLogs(context.Background(), logs.Request{}, func(logs.LogLine) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("TailLogs after each stopped = %v, want %v", err, stop)
	}
}

func TestBindings(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	if _, err := n.sec.Store().Set(ctx, "secret/web", map[string][]byte{"TOKEN": []byte("t")}, "test"); err != nil {
		t.Fatal(err)
	}
	b := kubesync.Binding{Namespace: "web-prod", Name: "web-env", Path: "secret/web"}
	got, err := n.c.Bind(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b, got); diff != "" {
		t.Errorf("Bind answer (-want +got):\n%s", diff)
	}
	st, err := n.c.SecretBindings(ctx)
	if err != nil || len(st) != 1 || st[0].Binding.Name != "web-env" || st[0].Error != "" || st[0].LastSync.IsZero() {
		t.Fatalf("SecretBindings = %+v, %v", st, err)
	}
	_, err = n.c.Bind(ctx, kubesync.Binding{Namespace: "Bad_NS", Name: "x", Path: "secret/web"})
	wantAPIError(t, err, http.StatusBadRequest, `namespace "Bad_NS" is invalid`)
	un, err := n.c.Unbind(ctx, "web-prod", "web-env")
	if err != nil || un.Deleted != "web-prod/web-env" {
		t.Fatalf("Unbind = %+v, %v", un, err)
	}
	_, err = n.c.Unbind(ctx, "web-prod", "web-env")
	wantAPIError(t, err, http.StatusNotFound, "no secret binding web-prod/web-env")
}

func TestConsoleAndRoutes(t *testing.T) {
	n := newTestNode(t)
	ctx := context.Background()
	info, err := n.c.Console(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/metrics/"}, info.Tools); diff != "" {
		t.Errorf("console tools (-want +got):\n%s", diff)
	}
	routes, err := n.c.Routes(ctx)
	if err != nil || len(routes.Routes) != 0 || routes.CAFile != "" {
		t.Fatalf("Routes = %+v, %v", routes, err)
	}
}

// TestServerErrorReachesCaller checks the contract every method relies on: a refusal with a
// status and message arrives as that *api.Error, untouched by the client.
func TestServerErrorReachesCaller(t *testing.T) {
	const msg = "secret path secret/x: the key \"A B\" has the character ' ': use letters, digits, _ . -"
	mux := http.NewServeMux()
	secrets.RouteSet.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		api.WriteError(w, api.Errorf(http.StatusBadRequest, "%s", msg))
	})
	c := serve(t, mux)
	_, err := c.SetSecret(context.Background(), "secret/x", secrets.SetRequest{})
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *api.Error", err, err)
	}
	if diff := cmp.Diff(&api.Error{Status: http.StatusBadRequest, Message: msg}, ae); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}
