package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/testnode"
)

// cpuQuota returns the CFS quota of cgroup path in µs per period ("max" or "-1" for none), from
// cgroup v2's cpu.max or v1's cpu.cfs_quota_us.
func cpuQuota(t *testing.T, path string) string {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", path, "cpu.max")); err == nil {
		return strings.Fields(string(b))[0]
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpu", path, "cpu.cfs_quota_us"))
	if err != nil {
		t.Fatalf("no CPU quota for cgroup %s: %v", path, err)
	}
	return strings.TrimSpace(string(b))
}

// notification is the part of Alertmanager's webhook payload the test reads.
type notification struct {
	Status string `json:"status"`
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// alertReceiver is a webhook receiver inside the node's namespace; it returns its URL and a
// function that waits for a notification about alertname with the given status.
func (n *node) alertReceiver() (string, func(alertname, status string, timeout time.Duration)) {
	n.t.Helper()
	l, err := n.Listen(testnode.NodeIP + ":0")
	if err != nil {
		n.t.Fatal(err)
	}
	var mu sync.Mutex
	var got []notification
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var nt notification
		if err := json.NewDecoder(r.Body).Decode(&nt); err == nil {
			mu.Lock()
			got = append(got, nt)
			mu.Unlock()
		}
	})}
	go srv.Serve(l)
	n.t.Cleanup(func() { srv.Close() })
	wait := func(alertname, status string, timeout time.Duration) {
		n.t.Helper()
		n.Eventually(fmt.Sprintf("a %s notification for %s", status, alertname), timeout, func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, nt := range got {
				for _, a := range nt.Alerts {
					if a.Labels["alertname"] == alertname && a.Status == status {
						return nil
					}
				}
			}
			return fmt.Errorf("%d notifications so far", len(got))
		})
	}
	return "http://" + l.Addr().String() + "/hook", wait
}

// TestObservability deploys a workload that logs a unique line and exports a counter, and
// finds the line with `gluebox logs`, and the counter and the container's CPU with
// `gluebox metrics query`, through the bundled collector and stores; then a crash-looping
// workload fires the default PodCrashLooping alert at a webhook receiver, and fixing it sends
// the resolve message.
func TestObservability(t *testing.T) {
	n := newNode(t)
	hookURL, waitNotification := n.alertReceiver()
	n.Start("--alert-webhook-url", hookURL, "--alert-evaluation-interval", "5s",
		"--alert-group-wait", "5s", "--alert-group-interval", "10s",
		"--metrics-memory-limit", "400Mi", "--alerting-memory-limit", "200Mi", "--log-collector-memory-limit", "0",
		"--observability-cpu-limit", "0.8")

	// The memory-limit flags reach the children's cgroups; VictoriaMetrics sizes its caches at
	// half its limit, and a limit of 0 means none.
	vmPID := ""
	n.Eventually("children with their memory limits", time.Minute, func() error {
		out, err := n.Gluebox("status")
		if err != nil {
			return err
		}
		if m := regexp.MustCompile(`(?m)^victoria-metrics\s+running\s+(\d+)\s`).FindStringSubmatch(out); m != nil {
			vmPID = m[1]
		}
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^victoria-metrics\s+running\s.*/400 MiB\s+0\.8 cores\s`),
			regexp.MustCompile(`(?m)^victoria-logs\s+running\s.*/512 MiB`),
			regexp.MustCompile(`(?m)^vmalert\s+running\s.*/200 MiB`),
			regexp.MustCompile(`(?m)^alertmanager\s+running\s.*/200 MiB\s+0\.5 cores\s`),
			regexp.MustCompile(`(?m)^vlagent\s+running\s+\d+\s+\d+\s+\d+ MiB\s`),
		} {
			if !want.MatchString(out) {
				return fmt.Errorf("status has no line matching %s:\n%s", want, out)
			}
		}
		return nil
	})
	if args, err := os.ReadFile("/proc/" + vmPID + "/cmdline"); err != nil || !strings.Contains(string(args), "-memory.allowedBytes=209715200\x00") {
		t.Errorf("VictoriaMetrics' caches do not follow its limit: %v %q", err, args)
	}
	// Together they get 0.8 cores; each gets its own limit, but no more than that.
	layout, err := paths.New(n.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	children := layout.CgroupRoot() + "/children"
	for cg, want := range map[string]string{children: "80000", children + "/victoria-metrics": "80000", children + "/alertmanager": "50000"} {
		if got := cpuQuota(t, cg); got != want {
			t.Errorf("CPU quota of cgroup %s = %s µs per 100 ms, want %s", cg, got, want)
		}
	}
	n.pushImage("testdata/images/hello", "127.0.0.1:5000/e2e/hello:1")
	marker := fmt.Sprintf("e2e-marker-%d", time.Now().UnixNano())
	n.MustKubectl("create", "namespace", "hello-obs") // app hello, env obs, for the dashboard
	n.Apply(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: hello-obs}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata:
      labels: {app: app}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8080"}
    spec:
      containers:
        - name: app
          image: registry.gluebox.local/e2e/hello:1
          env: [{name: HELLO_START_LOG, value: "` + marker + `"}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`)
	n.MustKubectl("-n", "hello-obs", "rollout", "status", "deploy/app", "--timeout=180s")
	ip := n.MustKubectl("-n", "hello-obs", "get", "pods", "-l", "app=app", "-o", "jsonpath={.items[0].status.podIP}")
	for i := 0; i < 3; i++ {
		if out, err := n.Curl("http://" + ip + ":8080/log?msg=request-" + marker); err != nil {
			t.Fatalf("request: %v: %s", err, out)
		}
	}

	n.Eventually("the start line found by gluebox logs", 90*time.Second, func() error {
		out, err := n.Gluebox("logs", "--grep", marker, "--since", "10m")
		if err != nil || !strings.Contains(out, "hello-obs/app-") || !strings.Contains(out, marker) {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	n.Eventually("gluebox's own log lines in the store", 60*time.Second, func() error {
		out, err := n.Gluebox("logs", "--query", "source:=gluebox", "--grep", "node ready", "--since", "30m")
		if err != nil || !strings.Contains(out, "node ready") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	n.Eventually("the app's counter scraped", 90*time.Second, func() error {
		out, err := n.Gluebox("metrics", "query", `hello_requests_total{namespace="hello-obs"}`)
		if err != nil || !strings.Contains(out, "hello_requests_total{") || !strings.Contains(out, " 3 @") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	n.Eventually("the container's CPU from cAdvisor", 90*time.Second, func() error {
		out, err := n.Gluebox("metrics", "query", `container_cpu_usage_seconds_total{namespace="hello-obs", container="app"}`)
		if err != nil || !strings.Contains(out, `pod="app-`) {
			up, _ := n.Gluebox("metrics", "query", `up`)
			some, _ := n.Gluebox("metrics", "query", `topk(3, container_cpu_usage_seconds_total)`)
			return fmt.Errorf("%v: %q\nup: %s\nsome cadvisor series: %s", err, out, up, some)
		}
		return nil
	})
	n.Eventually("kube-state metrics with the namespace's app labels", 90*time.Second, func() error {
		out, err := n.Gluebox("metrics", "query", `kube_deployment_status_replicas_available{namespace="hello-obs", deployment="app"}`)
		if err != nil || !strings.Contains(out, " 1 @") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	n.Eventually("the environment's dashboard has CPU and memory series", 90*time.Second, func() error {
		out, err := n.Run(30*time.Second, "curl", "-sS", "--fail", "--unix-socket", filepath.Join(n.DataDir, "run", "gluebox.sock"),
			"http://gluebox/v1/dashboards/hello/obs?since=10m&step=15s")
		var d struct {
			Panels []struct {
				ID     string            `json:"id"`
				Series []json.RawMessage `json:"series"`
			} `json:"panels"`
		}
		if err == nil {
			err = json.Unmarshal([]byte(out), &d)
		}
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, p := range d.Panels {
			if (p.ID == "cpu" || p.ID == "memory") && len(p.Series) == 0 {
				return fmt.Errorf("panel %s has no series yet", p.ID)
			}
		}
		return nil
	})
	if out, err := n.Gluebox("metrics", "query", "rate(("); err == nil || !strings.Contains(out, "invalid") {
		t.Fatalf("a bad expression was not refused clearly: %v: %s", err, out)
	}

	n.Eventually("the stores' retention and disk use exported for the budget alerts", 90*time.Second, func() error {
		out, err := n.Gluebox("metrics", "query", `gluebox_observability_retention_seconds{store="metrics", kind="effective"}`)
		if err != nil || !(strings.Contains(out, "} 2.592e+06 @") || strings.Contains(out, "} 2592000 @")) { // 30 days
			return fmt.Errorf("%v: %q", err, out)
		}
		if out, err = n.Gluebox("metrics", "query", `gluebox_observability_disk_bytes{store="logs"} > 0`); err != nil || !strings.Contains(out, "gluebox_observability_disk_bytes") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})

	// VictoriaMetrics' own query UI, through the console behind its login.
	consoleCA := filepath.Join(n.DataDir, "pki", "console", "console-ca.crt")
	jar := filepath.Join(n.Root, "console-cookies")
	vmui := "https://127.0.0.1:8443/metrics/vmui/"
	if out, err := n.Curl("--cacert", consoleCA, vmui); err == nil {
		t.Fatalf("the metrics UI answered without a login: %s", out)
	}
	pw, err := n.Gluebox("console", "password")
	if err != nil {
		t.Fatalf("console password: %v: %s", err, pw)
	}
	if out, err := n.Curl("--cacert", consoleCA, "-c", jar, "--data-urlencode", "password="+pw, "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:8443/login"); err != nil || out != "303" {
		t.Fatalf("console login: %v: %s", err, out)
	}
	if out, err := n.Curl("--cacert", consoleCA, "-b", jar, vmui); err != nil || !strings.Contains(strings.ToLower(out), "<html") {
		t.Fatalf("metrics UI after login: %v: %.300s", err, out)
	}
	if out, err := n.Curl("--cacert", consoleCA, "-b", jar, "https://127.0.0.1:8443/metrics/prometheus/api/v1/query?query=up"); err != nil || !strings.Contains(out, `"status":"success"`) {
		t.Fatalf("metrics UI's query API after login: %v: %.300s", err, out)
	}

	// A crash-looping workload fires PodCrashLooping; the fix resolves it.
	n.Apply(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: crash, namespace: hello-obs}
spec:
  replicas: 1
  selector: {matchLabels: {app: crash}}
  template:
    metadata: {labels: {app: crash}}
    spec:
      containers:
        - name: app
          image: registry.gluebox.local/e2e/hello:1
          env: [{name: HELLO_CRASH, value: "1"}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
`)
	waitNotification("PodCrashLooping", "firing", 5*time.Minute)
	if out, err := n.Gluebox("alerts", "list"); err != nil || !strings.Contains(out, "PodCrashLooping") {
		t.Fatalf("alerts list: %v\n%s", err, out)
	}
	n.MustKubectl("-n", "hello-obs", "set", "env", "deploy/crash", "HELLO_CRASH-")
	waitNotification("PodCrashLooping", "resolved", 5*time.Minute)
}
