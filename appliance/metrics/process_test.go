package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// newTestMetrics starts the bundled VictoriaMetrics on a temp dir and a free port, waits until
// it is ready and registers its stop (and a check that Run returned nil) with t.Cleanup.
func newTestMetrics(t *testing.T, cfg Config) *Metrics {
	t.Helper()
	cfg.Binary = testbin.Path(t, "victoria-metrics", "GLUEBOX_TEST_VICTORIAMETRICS")
	cfg.Dir = t.TempDir()
	cfg.Port = testbin.FreePort(t)
	cfg.LogFile = cfg.Dir + "/victoria-metrics.log"
	m, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		pid := m.State().PID
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		if pid != 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			t.Errorf("victoria-metrics (pid %d) still runs after stop", pid)
		}
	})
	readyCtx, cancelReady := context.WithTimeout(ctx, 20*time.Second)
	defer cancelReady()
	if err := m.WaitReady(readyCtx); err != nil {
		t.Fatalf("not ready: %v; state %+v; see %s", err, m.State(), cfg.LogFile)
	}
	return m
}

// eventually polls f every 200ms until it returns nil or within passes.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestVictoriaMetricsProcess(t *testing.T) {
	// A stand-in for gluebox's own /metrics endpoint, scraped every second.
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "# TYPE gluebox_test_builds_total counter\ngluebox_test_builds_total{result=\"ok\"} 42\n")
	}))
	defer exporter.Close()
	m := newTestMetrics(t, Config{ScrapeInterval: time.Second, Targets: Targets{Gluebox: exporter.URL + "/metrics"}})
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	c := m.Client()

	// Ingest three samples a few minutes old through the Prometheus text import.
	base := time.Now().Add(-3 * time.Minute).Truncate(time.Second)
	var body strings.Builder
	for i := range 3 {
		fmt.Fprintf(&body, "gluebox_test_temperature{room=\"lab\"} %d %d\n", 20+i, base.Add(time.Duration(i)*time.Minute).UnixMilli())
	}
	resp, err := http.Post(m.URL()+"/api/v1/import/prometheus", "text/plain", strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("import answered %s", resp.Status)
	}

	eventually(t, 15*time.Second, "instant query of the imported series", func() error {
		res, err := c.Query(ctx, `gluebox_test_temperature{room="lab"}`, base.Add(2*time.Minute))
		if err != nil {
			return err
		}
		if res.Type != "vector" || len(res.Series) != 1 {
			return fmt.Errorf("got %+v", res)
		}
		s := res.Series[0]
		if s.Labels["__name__"] != "gluebox_test_temperature" || s.Labels["room"] != "lab" || s.Samples[0].Value != 22 {
			return fmt.Errorf("got series %+v", s)
		}
		return nil
	})

	res, err := c.QueryRange(ctx, `gluebox_test_temperature`, base, base.Add(2*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != "matrix" || len(res.Series) != 1 || len(res.Series[0].Samples) != 3 {
		t.Fatalf("range query: %+v", res)
	}
	for i, s := range res.Series[0].Samples {
		if s.Value != float64(20+i) || !s.Time.Equal(base.Add(time.Duration(i)*time.Minute)) {
			t.Errorf("sample %d = %+v, want %d at %s", i, s, 20+i, base.Add(time.Duration(i)*time.Minute))
		}
	}

	// The generated scrape config works: the exporter's counter arrives with job="gluebox".
	eventually(t, 15*time.Second, "scraped gluebox counter", func() error {
		res, err := c.Query(ctx, `gluebox_test_builds_total{job="gluebox",result="ok"}`, time.Time{})
		if err != nil {
			return err
		}
		if len(res.Series) != 1 || res.Series[0].Samples[0].Value != 42 {
			return fmt.Errorf("got %+v", res)
		}
		return nil
	})

	// VictoriaMetrics' own verdict on a bad expression comes back as ErrInvalid.
	if _, err := c.Query(ctx, "sum(rate(", time.Time{}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "sum(rate(") {
		t.Errorf("bad expression: %v, want ErrInvalid naming the expression", err)
	}

	// The UI proxy serves vmui and its read API under a prefix, and refuses admin paths.
	ui := httptest.NewServer(m.UIHandler("/metrics/ui"))
	defer ui.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		want         int
		contains     string
	}{
		{"GET", "/metrics/ui", http.StatusFound, ""},
		{"GET", "/metrics/ui/vmui/", http.StatusOK, "<html"},
		{"GET", "/metrics/ui/prometheus/api/v1/query?query=gluebox_test_builds_total", http.StatusOK, `"result"`},
		{"POST", "/metrics/ui/api/v1/admin/tsdb/delete_series?match[]=up", http.StatusNotFound, ""},
		{"GET", "/metrics/ui/internal/force_merge", http.StatusNotFound, ""},
		{"DELETE", "/metrics/ui/vmui/", http.StatusMethodNotAllowed, ""},
		{"GET", "/elsewhere/vmui/", http.StatusNotFound, ""},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, ui.URL+tc.path, nil)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.contains) {
			t.Errorf("%s %s = %s (%.80q), want %d containing %q", tc.method, tc.path, resp.Status, b, tc.want, tc.contains)
		}
		if tc.want == http.StatusFound && resp.Header.Get("Location") != "/metrics/ui/vmui/" {
			t.Errorf("redirect to %q, want /metrics/ui/vmui/", resp.Header.Get("Location"))
		}
	}

	// VictoriaMetrics' own relabelling engine applies the generated pod rules as intended.
	for _, tc := range []struct{ name, in, want, path string }{
		{"annotated pod", `{__address__="10.42.0.7:8080",__metrics_path__="/metrics",__scheme__="http",job="kubernetes-pods",` +
			`__meta_kubernetes_namespace="shop-prod",__meta_kubernetes_pod_name="web-1",__meta_kubernetes_pod_container_name="web",` +
			`__meta_kubernetes_pod_node_name="node-a",__meta_kubernetes_pod_phase="Running",__meta_kubernetes_pod_label_app="web",` +
			`__meta_kubernetes_pod_annotation_prometheus_io_scrape="true",__meta_kubernetes_pod_annotation_prometheus_io_port="9100",` +
			`__meta_kubernetes_pod_annotation_prometheus_io_path="/stats"}`,
			`{app="web", container="web", instance="10.42.0.7:9100", job="kubernetes-pods", namespace="shop-prod", node="node-a", pod="web-1"}`,
			`__metrics_path__="/stats"`},
		{"no annotation", `{__address__="10.42.0.7:8080",job="kubernetes-pods",__meta_kubernetes_pod_phase="Running"}`, "{}", ""},
		{"finished pod", `{__address__="10.42.0.7:8080",job="kubernetes-pods",__meta_kubernetes_pod_phase="Succeeded",` +
			`__meta_kubernetes_pod_annotation_prometheus_io_scrape="true"}`, "{}", ""},
	} {
		got, steps := relabelDebug(t, m.URL(), tc.in)
		if got != tc.want {
			t.Errorf("%s: relabelled to %s, want %s", tc.name, got, tc.want)
		}
		if !strings.Contains(steps, tc.path) {
			t.Errorf("%s: no relabelling step set %s:\n%s", tc.name, tc.path, steps)
		}
	}

	eventually(t, 10*time.Second, "data on disk", func() error {
		n, err := m.DiskUsage()
		if err == nil && n == 0 {
			err = errors.New("0 bytes")
		}
		return err
	})
	if st := m.State(); st.State != "running" || st.PID == 0 {
		t.Errorf("state %+v, want running with a pid", st)
	}
}

// relabelDebug runs PodRelabelConfigs on the labels in through VictoriaMetrics'
// /target-relabel-debug and returns the resulting labels and the output labels of every step.
func relabelDebug(t *testing.T, base, in string) (result, steps string) {
	t.Helper()
	rules, err := yaml.Marshal(PodRelabelConfigs())
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"relabel_configs": {string(rules)}, "metric": {in}, "format": {"json"}}
	resp, err := http.Get(base + "/target-relabel-debug?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Steps  []struct {
			OutLabels string `json:"outLabels"`
		} `json:"steps"`
		ResultingLabels string `json:"resultingLabels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Status != "success" || len(out.Steps) == 0 {
		t.Fatalf("target-relabel-debug: %v, %+v", err, out)
	}
	for _, st := range out.Steps {
		steps += html.UnescapeString(st.OutLabels) + "\n"
	}
	return html.UnescapeString(out.ResultingLabels), steps
}

// TestVictoriaMetricsStopsAtDiskBudget gives the store a budget its data is already past once
// it writes its first files: VictoriaMetrics must refuse samples (read-only) instead of growing.
func TestVictoriaMetricsStopsAtDiskBudget(t *testing.T) {
	m := newTestMetrics(t, Config{DiskBudget: 1})
	eventually(t, 10*time.Second, "import refused in read-only mode", func() error {
		resp, err := http.Post(m.URL()+"/api/v1/import/prometheus", "text/plain", strings.NewReader("gluebox_test_budget 1\n"))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "read-only mode") {
			return fmt.Errorf("import answered %s: %.200s", resp.Status, b)
		}
		return nil
	})
}
