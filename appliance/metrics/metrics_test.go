package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/internal/golden"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// fullTargets is a Targets value with every job configured.
func fullTargets() Targets {
	return Targets{
		Kubelet:    "192.168.1.20:10250",
		NodeName:   "node-a",
		APIServer:  "127.0.0.1:6443",
		CAFile:     "/var/lib/gluebox/pki/cluster-ca.crt",
		CertFile:   "/var/lib/gluebox/pki/apiserver-kubelet-client.crt",
		KeyFile:    "/var/lib/gluebox/pki/apiserver-kubelet-client.key",
		Gluebox:    "http://127.0.0.1:8444/metrics",
		Kubeconfig: "/var/lib/gluebox/kubeconfig/metrics.yaml",
		Extra:      []Target{{Job: "victoria-logs", URL: "http://127.0.0.1:9428/metrics"}},
	}
}

func TestScrapeConfigGolden(t *testing.T) {
	got, err := ScrapeConfigYAML(Config{Targets: fullTargets()})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "scrape.yaml", got)
}

// TestScrapeConfigAcceptedByVictoriaMetrics runs the bundled program's strict dry run on the
// generated file, so a field VictoriaMetrics does not know fails here, not at boot.
func TestScrapeConfigAcceptedByVictoriaMetrics(t *testing.T) {
	bin := testbin.Path(t, "victoria-metrics", "GLUEBOX_TEST_VICTORIAMETRICS")
	for name, targets := range map[string]Targets{"full": fullTargets(), "none": {}} {
		t.Run(name, func(t *testing.T) {
			got, err := ScrapeConfigYAML(Config{Targets: targets, ScrapeInterval: 1500 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "scrape.yaml")
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-promscrape.config="+file, "-promscrape.config.dryRun", "-promscrape.config.strictParse", "-loggerLevel=ERROR").CombinedOutput()
			if err != nil {
				t.Fatalf("victoria-metrics rejects the generated config: %v\n%s\n%s", err, out, got)
			}
		})
	}
}

func TestScrapeConfigJobs(t *testing.T) {
	tests := []struct {
		name    string
		targets Targets
		want    []string
	}{
		{"nothing but itself", Targets{}, nil},
		{"gluebox only", Targets{Gluebox: "https://127.0.0.1:8444/internal/metrics?format=text"}, []string{"gluebox"}},
		{"pods only", Targets{Kubeconfig: "/k.yaml"}, []string{"kubernetes-pods"}},
		{"everything", fullTargets(), []string{"kubelet", "cadvisor", "apiserver", "gluebox", "kubernetes-pods", "victoria-logs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := BuildScrapeConfig(Config{Targets: tt.targets})
			if err != nil {
				t.Fatal(err)
			}
			var jobs []string
			for _, sc := range pc.ScrapeConfigs {
				jobs = append(jobs, sc.JobName)
			}
			if diff := cmp.Diff(tt.want, jobs); diff != "" {
				t.Errorf("jobs (-want +got):\n%s", diff)
			}
			if pc.Global.ScrapeInterval != "15s" {
				t.Errorf("scrape interval %q, want the 15s default", pc.Global.ScrapeInterval)
			}
		})
	}
	pc, err := BuildScrapeConfig(Config{Targets: Targets{Gluebox: "https://127.0.0.1:8444/internal/metrics?format=text"}})
	if err != nil {
		t.Fatal(err)
	}
	want := ScrapeConfig{JobName: "gluebox", Scheme: "https", MetricsPath: "/internal/metrics",
		Params: map[string][]string{"format": {"text"}}, StaticConfigs: []StaticConfig{{Targets: []string{"127.0.0.1:8444"}}}}
	if diff := cmp.Diff(want, pc.ScrapeConfigs[0]); diff != "" {
		t.Errorf("gluebox job from a URL with a query (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config { return Config{Binary: "/b/victoria-metrics", Dir: "/var/lib/gluebox/metrics"} }
	tests := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error; empty means valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"everything", func(c *Config) { c.Targets = fullTargets(); c.Retention = 24 * time.Hour }, ""},
		{"no binary", func(c *Config) { c.Binary = "" }, "Binary is required"},
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir is required"},
		{"relative dir", func(c *Config) { c.Dir = "metrics" }, "must be an absolute path"},
		{"bad port", func(c *Config) { c.Port = 70000 }, "not a TCP port"},
		{"short retention", func(c *Config) { c.Retention = time.Hour }, "shorter than VictoriaMetrics' minimum of 24h"},
		{"negative budget", func(c *Config) { c.DiskBudget = -1 }, "must not be negative"},
		{"scrape too often", func(c *Config) { c.ScrapeInterval = time.Millisecond }, "shorter than 1s"},
		{"kubelet without certs", func(c *Config) { c.Targets.Kubelet = "10.0.0.1:10250" }, "needs Targets.CAFile, CertFile and KeyFile"},
		{"kubelet not host:port", func(c *Config) { c.Targets = fullTargets(); c.Targets.Kubelet = "10.0.0.1" }, `Targets.Kubelet "10.0.0.1" is not host:port`},
		{"gluebox not a URL", func(c *Config) { c.Targets.Gluebox = "tcp://127.0.0.1:8444/metrics" }, "must be http(s)://host[:port]/path"},
		{"gluebox with password", func(c *Config) { c.Targets.Gluebox = "http://u:p@127.0.0.1:8444/metrics" }, "must not carry credentials"},
		{"extra without job", func(c *Config) { c.Targets.Extra = []Target{{URL: "http://127.0.0.1:1/metrics"}} }, "has no job name"},
		{"extra reserved job", func(c *Config) { c.Targets.Extra = []Target{{Job: "kubelet", URL: "http://127.0.0.1:1/metrics"}} }, `job "kubelet" is used twice or is reserved`},
		{"extra twice", func(c *Config) {
			c.Targets.Extra = []Target{{Job: "x", URL: "http://127.0.0.1:1/metrics"}, {Job: "x", URL: "http://127.0.0.1:2/metrics"}}
		}, `job "x" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	cfg := Config{Binary: "/b/vm", Dir: "/d/metrics", MemoryBytes: 100 << 20}
	cfg.defaults()
	want := []string{
		"-httpListenAddr=127.0.0.1:8428",
		"-memory.allowedBytes=104857600",
		"-promscrape.config=/d/metrics/scrape.yaml",
		"-promscrape.config.strictParse=true",
		"-promscrape.suppressScrapeErrorsDelay=10m",
		"-retentionPeriod=30d",
		"-search.latencyOffset=5s",
		"-selfScrapeInterval=15s",
		"-storage.minFreeDiskSpaceBytes=536870912",
		"-storageDataPath=/d/metrics/data",
	}
	if diff := cmp.Diff(want, Args(cfg, DefaultMinFreeDisk)); diff != "" {
		t.Errorf("default args (-want +got):\n%s", diff)
	}
	cfg.ExtraFlags = map[string]string{"retentionPeriod": "90d", "search.maxQueryDuration": "1m"}
	got := Args(cfg, 1)
	for _, w := range []string{"-retentionPeriod=90d", "-search.maxQueryDuration=1m", "-storage.minFreeDiskSpaceBytes=1"} {
		if !contains(got, w) {
			t.Errorf("args %v lack override %s", got, w)
		}
	}
	if contains(got, "-retentionPeriod=30d") {
		t.Errorf("overridden flag still present: %v", got)
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

func TestMinFreeForBudget(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name                      string
		free, used, budget, floor uint64
		want                      uint64
	}{
		{"no budget", 100 * gib, 5 * gib, 0, gib, gib},
		{"disk smaller than budget", 3 * gib, 1 * gib, 10 * gib, gib, gib},
		{"room left in budget", 100 * gib, 2 * gib, 10 * gib, gib, 92 * gib},
		{"over budget: read-only now", 100 * gib, 12 * gib, 10 * gib, gib, 102 * gib},
		{"floor wins", 10 * gib, 1 * gib, 10 * gib, 2 * gib, 2 * gib},
	}
	for _, tt := range tests {
		if got := MinFreeForBudget(tt.free, tt.used, tt.budget, tt.floor); got != tt.want {
			t.Errorf("%s: MinFreeForBudget = %d GiB, want %d GiB", tt.name, got/gib, tt.want/gib)
		}
	}
}

func TestNewWritesScrapeConfigAndDirs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "metrics")
	m, err := New(Config{Binary: "/nonexistent/victoria-metrics", Dir: dir, Targets: Targets{Gluebox: "http://127.0.0.1:8444/metrics"}, DiskBudget: 1 << 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "scrape.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "job_name: gluebox") {
		t.Errorf("scrape.yaml lacks the gluebox job:\n%s", b)
	}
	if st, err := os.Stat(filepath.Join(dir, "data")); err != nil || !st.IsDir() {
		t.Errorf("data dir not created: %v", err)
	}
	if m.URL() != "http://127.0.0.1:8428" || m.Name() != "victoria-metrics" || m.State().State != "starting" {
		t.Errorf("URL %q, Name %q, State %+v", m.URL(), m.Name(), m.State())
	}
	if c := m.Client(); c.MaxRange != 31*24*time.Hour {
		t.Errorf("client MaxRange = %s, want retention + 1 day", c.MaxRange)
	}
	if _, err := New(Config{Dir: dir}, nil); err == nil {
		t.Error("New accepted a config without Binary")
	}
}

func TestCheckArguments(t *testing.T) {
	c := &Client{BaseURL: "http://127.0.0.1:1"}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		expr       string
		start, end time.Time
		step       time.Duration
		want       string
	}{
		{"empty expression", "", now.Add(-time.Hour), now, time.Minute, "the expression is empty"},
		{"blank expression", "  \n", now.Add(-time.Hour), now, time.Minute, "the expression is empty"},
		{"too long", strings.Repeat("a", MaxExprLen+1), now.Add(-time.Hour), now, time.Minute, "more than 16384"},
		{"zero step", "up", now.Add(-time.Hour), now, 0, "step 0s must be positive"},
		{"negative step", "up", now.Add(-time.Hour), now, -time.Second, "must be positive"},
		{"end before start", "up", now, now.Add(-time.Hour), time.Minute, "is before start"},
		{"no start", "up", time.Time{}, now, time.Minute, "needs both a start and an end"},
		{"range too large", "up", now.Add(-40 * 24 * time.Hour), now, time.Hour, "longer than the 744h0m0s allowed"},
		{"too many points", "up", now.Add(-24 * time.Hour), now, time.Second, "86401 points per series, more than 11000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.QueryRange(context.Background(), tt.expr, tt.start, tt.end, tt.step)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("QueryRange error = %v, want ErrInvalid containing %q", err, tt.want)
			}
		})
	}
	if _, err := c.Query(context.Background(), "", time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Query(\"\") = %v, want ErrInvalid", err)
	}
	small := &Client{BaseURL: c.BaseURL, MaxRange: time.Hour, MaxPoints: 10}
	if err := small.CheckRange(now.Add(-2*time.Hour), now, time.Hour); err == nil || !strings.Contains(err.Error(), "longer than the 1h0m0s allowed") {
		t.Errorf("MaxRange not honoured: %v", err)
	}
	if err := small.CheckRange(now.Add(-time.Hour), now, time.Minute); err == nil || !strings.Contains(err.Error(), "more than 10") {
		t.Errorf("MaxPoints not honoured: %v", err)
	}
	if err := small.CheckRange(now.Add(-time.Hour), now, 10*time.Minute); err != nil {
		t.Errorf("a range within the limits was refused: %v", err)
	}
}

func TestSampleJSON(t *testing.T) {
	in := []Sample{
		{Time: time.UnixMilli(1764158400123).UTC(), Value: 1.5},
		{Time: time.UnixMilli(1764158400000).UTC(), Value: math.NaN()},
		{Time: time.UnixMilli(1764158400000).UTC(), Value: math.Inf(-1)},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[[1764158400.123,"1.5"],[1764158400,"NaN"],[1764158400,"-Inf"]]`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var out []Sample
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !out[0].Time.Equal(in[0].Time) || out[0].Value != 1.5 || !math.IsNaN(out[1].Value) || !math.IsInf(out[2].Value, -1) {
		t.Errorf("round trip gave %+v", out)
	}
	if err := json.Unmarshal([]byte(`[1, 2]`), &out[0]); err == nil {
		t.Error("a numeric value was accepted; VictoriaMetrics sends strings")
	}
}

// TestQueryErrorsFromServer checks how the store's answers map to errors, with a stand-in for
// VictoriaMetrics' HTTP API (the real one is exercised in TestVictoriaMetricsProcess).
func TestQueryErrorsFromServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		switch r.Form.Get("query") {
		case "bad(":
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"status":"error","errorType":"422","error":"cannot parse query \"bad(\": unexpected end of stream"}`)
		case "busy":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":"error","errorType":"503","error":"too many concurrent requests"}`)
		case "html":
			io.WriteString(w, "<html>proxy error</html>")
		case "scalar":
			io.WriteString(w, `{"status":"success","data":{"resultType":"scalar","result":[1764158400,"2"]}}`)
		}
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	ctx := context.Background()
	_, err := c.Query(ctx, "bad(", time.Time{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "unexpected end of stream") {
		t.Errorf("bad expression: %v, want ErrInvalid with VictoriaMetrics' message", err)
	}
	_, err = c.Query(ctx, "busy", time.Time{})
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "too many concurrent requests") {
		t.Errorf("busy store: %v, want a non-ErrInvalid error with the message", err)
	}
	if _, err = c.Query(ctx, "html", time.Time{}); err == nil || !strings.Contains(err.Error(), "proxy error") {
		t.Errorf("non-JSON answer: %v", err)
	}
	res, err := c.Query(ctx, "scalar", time.Time{})
	if err != nil || res.Type != "scalar" || len(res.Series) != 1 || res.Series[0].Samples[0].Value != 2 {
		t.Errorf("scalar: %+v, %v", res, err)
	}
	down := &Client{BaseURL: "http://127.0.0.1:1"}
	if _, err := down.Query(ctx, "up", time.Time{}); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("store down: %v", err)
	}
}

func TestUIPathAllowed(t *testing.T) {
	for path, want := range map[string]bool{
		"/vmui":                          true,
		"/vmui/":                         true,
		"/vmui/assets/index.js":          true,
		"/prometheus/api/v1/query":       true,
		"/prometheus/api/v1/query_range": true,
		"/prometheus/api/v1/labels":      true,
		"/api/v1/series":                 true,
		"/api/v1/status/tsdb":            true,
		"/prometheus/api/v1/admin/tsdb/delete_series": false,
		"/api/v1/admin/tsdb/snapshot":                 false,
		"/api/v1/import/prometheus":                   false,
		"/prometheus/api/v1/write":                    false,
		"/internal/force_merge":                       false,
		"/snapshot/create":                            false,
		"/flags":                                      false,
		"/metrics":                                    false,
		"/targets":                                    true,
		"/vmui/../internal/resetRollupResultCache":    false,
		"/": false,
	} {
		if got := UIPathAllowed(path); got != want {
			t.Errorf("UIPathAllowed(%q) = %v, want %v", path, got, want)
		}
	}
}
