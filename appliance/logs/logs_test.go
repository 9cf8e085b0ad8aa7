package logs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	ok := func() Config { return Config{Binary: "/b/victoria-logs", Dir: "/var/lib/gluebox/logs"} }
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"minimal", func(*Config) {}, ""},
		{"no binary", func(c *Config) { c.Binary = "" }, "Binary is required"},
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir is required"},
		{"relative dir", func(c *Config) { c.Dir = "logs" }, "must be an absolute path"},
		{"bad port", func(c *Config) { c.Port = -1 }, "not a TCP port"},
		{"short retention", func(c *Config) { c.Retention = 12 * time.Hour }, "shorter than VictoriaLogs' minimum of 24h"},
		{"negative budget", func(c *Config) { c.DiskBudget = -5 }, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(&c)
			checkErr(t, c.Validate(), tt.want)
		})
	}
}

func TestCollectorValidate(t *testing.T) {
	ok := func() CollectorConfig {
		return CollectorConfig{Binary: "/b/vlagent", Dir: "/var/lib/gluebox/logs-collector", Kubeconfig: "/k.yaml", StoreURL: "http://127.0.0.1:9428/insert/native"}
	}
	tests := []struct {
		name string
		mod  func(*CollectorConfig)
		want string
	}{
		{"minimal", func(*CollectorConfig) {}, ""},
		{"no binary", func(c *CollectorConfig) { c.Binary = "" }, "Binary is required"},
		{"relative dir", func(c *CollectorConfig) { c.Dir = "x" }, "must be an absolute path"},
		{"no kubeconfig", func(c *CollectorConfig) { c.Kubeconfig = "" }, "Kubeconfig is required"},
		{"no store", func(c *CollectorConfig) { c.StoreURL = "" }, "StoreURL is required"},
		{"store not a URL", func(c *CollectorConfig) { c.StoreURL = "127.0.0.1:9428" }, "is not an http(s) URL"},
		{"empty extra field", func(c *CollectorConfig) { c.ExtraFields = map[string]string{"": "x"} }, "empty field name"},
		{"negative queue", func(c *CollectorConfig) { c.MaxQueueBytes = -1 }, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(&c)
			checkErr(t, c.Validate(), tt.want)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", err, want)
	}
}

func TestArgs(t *testing.T) {
	cfg := Config{Binary: "/b", Dir: "/d/logs"}
	cfg.defaults()
	want := []string{
		"-httpListenAddr=127.0.0.1:9428",
		"-memory.allowedBytes=268435456",
		"-retentionPeriod=30d",
		"-storage.minFreeDiskSpaceBytes=536870912",
		"-storageDataPath=/d/logs/data",
	}
	if diff := cmp.Diff(want, Args(cfg)); diff != "" {
		t.Errorf("default args (-want +got):\n%s", diff)
	}
	cfg.DiskBudget = 10 << 30
	cfg.Retention = 7 * 24 * time.Hour
	cfg.ExtraFlags = map[string]string{"search.maxQueryDuration": "1m"}
	got := Args(cfg)
	for _, w := range []string{"-retention.maxDiskSpaceUsageBytes=10737418240", "-retentionPeriod=7d", "-search.maxQueryDuration=1m"} {
		if !contains(got, w) {
			t.Errorf("args %v lack %s", got, w)
		}
	}
}

func TestCollectorArgs(t *testing.T) {
	cfg := CollectorConfig{Binary: "/b/vlagent", Dir: "/d/logs-collector", Kubeconfig: "/k.yaml",
		StoreURL: "http://127.0.0.1:9428/insert/native", ExtraFields: map[string]string{"cluster": "prod", "appliance": "gluebox"},
		ExcludeFilter: `kubernetes.pod_namespace:=kube-system`}
	cfg.defaults()
	got, err := CollectorArgs(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-httpListenAddr=127.0.0.1:9429",
		"-kubernetesCollector=true",
		"-kubernetesCollector.checkpointsPath=/d/logs-collector/checkpoints.json",
		`-kubernetesCollector.excludeFilter=kubernetes.pod_namespace:=kube-system`,
		`-kubernetesCollector.extraFields={"appliance":"gluebox","cluster":"prod"}`,
		"-kubernetesCollector.logsPath=/var/log/containers",
		"-memory.allowedBytes=67108864",
		"-remoteWrite.maxDiskUsagePerURL=1073741824",
		"-remoteWrite.tmpDataPath=/d/logs-collector/queue",
		"-remoteWrite.url=http://127.0.0.1:9428/insert/native",
		"-tmpDataPath=/d/logs-collector",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("vlagent args (-want +got):\n%s", diff)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestNewCreatesDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	l, err := New(Config{Binary: "/nonexistent/victoria-logs", Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "data")); err != nil || !st.IsDir() {
		t.Errorf("data dir not created: %v", err)
	}
	if l.URL() != "http://127.0.0.1:9428" || l.InsertURL() != "http://127.0.0.1:9428/insert/native" || l.Name() != "victoria-logs" {
		t.Errorf("URL %q, InsertURL %q, Name %q", l.URL(), l.InsertURL(), l.Name())
	}
	cdir := filepath.Join(t.TempDir(), "collector")
	c, err := NewCollector(CollectorConfig{Binary: "/nonexistent/vlagent", Dir: cdir, Kubeconfig: "/k.yaml", StoreURL: l.InsertURL()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(cdir, "queue")); err != nil || !st.IsDir() {
		t.Errorf("queue dir not created: %v", err)
	}
	if c.Name() != "vlagent" || c.State().State != "starting" {
		t.Errorf("collector Name %q, State %+v", c.Name(), c.State())
	}
}

func TestArgumentChecks(t *testing.T) {
	c := &Client{BaseURL: "http://127.0.0.1:1"}
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"empty query", func() error { _, err := c.Query(ctx, " ", 10, time.Time{}, time.Time{}); return err }, "the query is empty"},
		{"long query", func() error {
			_, err := c.Query(ctx, strings.Repeat("x", MaxQueryLen+1), 10, time.Time{}, time.Time{})
			return err
		}, "more than 16384"},
		{"negative limit", func() error { _, err := c.Query(ctx, "*", -1, time.Time{}, time.Time{}); return err }, "must not be negative"},
		{"huge limit", func() error { _, err := c.Query(ctx, "*", MaxLimit+1, time.Time{}, time.Time{}); return err }, "more than the 50000 lines"},
		{"end before start", func() error { _, err := c.Query(ctx, "*", 10, now, now.Add(-time.Hour)); return err }, "is before start"},
		{"tail empty query", func() error { return c.Tail(ctx, "", 0, func(Line) error { return nil }) }, "the query is empty"},
		{"tail negative since", func() error { return c.Tail(ctx, "*", -time.Second, func(Line) error { return nil }) }, "since -1s must not be negative"},
		{"bad stream field", func() error { return c.Ingest(ctx, []Line{{Msg: "x"}}, "a,b") }, "contains a comma"},
		{"line without message", func() error { return c.Ingest(ctx, []Line{{Msg: "ok"}, {Fields: map[string]string{"a": "b"}}}) }, "line 1 has no message"},
		{"empty field name", func() error { return c.Ingest(ctx, []Line{{Msg: "x", Fields: map[string]string{"": "b"}}}) }, "field with an empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
	if err := c.Ingest(ctx, nil, "source"); err != nil {
		t.Errorf("Ingest of no lines = %v, want nil without contacting the store", err)
	}
}

func TestParseLines(t *testing.T) {
	in := `{"_msg":"second","_time":"2026-11-26T07:00:02Z","_stream":"{app=\"shop\"}","app":"shop"}
{"_msg":"first","_time":"2026-11-26T07:00:01.5Z","app":"shop","n":3}

`
	var lines []Line
	if err := readLines(strings.NewReader(in), func(l Line) error { lines = append(lines, l); return nil }); err != nil {
		t.Fatal(err)
	}
	sortByTime(lines)
	want := []Line{
		{Time: time.Date(2026, 11, 26, 7, 0, 1, 5e8, time.UTC), Msg: "first",
			Fields: map[string]string{"_msg": "first", "_time": "2026-11-26T07:00:01.5Z", "app": "shop", "n": "3"}},
		{Time: time.Date(2026, 11, 26, 7, 0, 2, 0, time.UTC), Msg: "second",
			Fields: map[string]string{"_msg": "second", "_time": "2026-11-26T07:00:02Z", "_stream": `{app="shop"}`, "app": "shop"}},
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if err := readLines(strings.NewReader(`{"_time":"yesterday"}`), func(Line) error { return nil }); err == nil {
		t.Error("a bad _time was accepted")
	}
	if err := readLines(strings.NewReader("not json\n"), func(Line) error { return nil }); err == nil {
		t.Error("a non-JSON line was accepted")
	}
}

// TestStoreErrors checks how the store's answers map to errors, with a stand-in for
// VictoriaLogs' HTTP API (the real one is exercised in TestVictoriaLogsProcess).
func TestStoreErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		switch {
		case r.Form.Get("query") == "bad(":
			http.Error(w, `cannot parse query [bad(]: unexpected end of query`, http.StatusBadRequest)
		case r.URL.Path == "/insert/jsonline":
			http.Error(w, "disk full", http.StatusServiceUnavailable)
		default:
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	ctx := context.Background()
	_, err := c.Query(ctx, "bad(", 1, time.Time{}, time.Time{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unexpected end of query") {
		t.Errorf("bad query: %v", err)
	}
	_, err = c.Query(ctx, "*", 1, time.Time{}, time.Time{})
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "overloaded") {
		t.Errorf("overloaded store: %v", err)
	}
	if err := c.Tail(ctx, "*", 0, func(Line) error { return nil }); err == nil || !strings.Contains(err.Error(), "overloaded") {
		t.Errorf("tail on an overloaded store: %v", err)
	}
	if err := c.Ingest(ctx, []Line{{Msg: "x"}}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("ingest refused: %v", err)
	}
}
