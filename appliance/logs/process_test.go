package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// runner is what newTestLogs and startCollector run: a component with a child process.
type runner interface {
	Run(ctx context.Context) error
	WaitReady(ctx context.Context) error
	State() supervise.ChildState
}

// start runs r until the returned stop is called (also registered with t.Cleanup, so the process
// goes away even when the test fails) and waits until it is ready. stop checks that Run returned
// nil and that the process is gone; calling it twice is harmless.
func start(t *testing.T, r runner, logFile string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		pid := r.State().PID
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
			t.Errorf("pid %d still runs after stop", pid)
		}
	}
	t.Cleanup(stop)
	readyCtx, cancelReady := context.WithTimeout(ctx, 20*time.Second)
	defer cancelReady()
	if err := r.WaitReady(readyCtx); err != nil {
		log, _ := os.ReadFile(logFile)
		t.Fatalf("not ready: %v; state %+v; log:\n%s", err, r.State(), log)
	}
	return stop
}

// newTestLogs starts the bundled VictoriaLogs on a temp dir and a free port.
func newTestLogs(t *testing.T) *Logs {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		Binary:  testbin.Path(t, "victoria-logs", "GLUEBOX_TEST_VICTORIALOGS"),
		Dir:     dir,
		Port:    testbin.FreePort(t),
		LogFile: filepath.Join(dir, "victoria-logs.log"),
	}
	l, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start(t, l, cfg.LogFile)
	return l
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

func msgs(lines []Line) string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Msg)
	}
	return strings.Join(out, "|")
}

func TestVictoriaLogsProcess(t *testing.T) {
	l := newTestLogs(t)
	c := l.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()

	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var lines []Line
	for i := range 3 {
		lines = append(lines, Line{Time: base.Add(time.Duration(i) * time.Second), Msg: fmt.Sprintf("build step %d", i+1),
			Fields: map[string]string{"source": "build", "app": "shop", "build": "b1", "level": "info"}})
	}
	if err := c.Ingest(ctx, lines, "source", "app", "build"); err != nil {
		t.Fatal(err)
	}

	var got []Line
	eventually(t, 15*time.Second, "query the ingested lines", func() error {
		var err error
		got, err = c.Query(ctx, `source:=build app:=shop`, 10, time.Time{}, time.Time{})
		if err == nil && len(got) != 3 {
			err = fmt.Errorf("got %d lines: %s", len(got), msgs(got))
		}
		return err
	})
	if m := msgs(got); m != "build step 1|build step 2|build step 3" {
		t.Errorf("lines %q, want the three steps oldest first", m)
	}
	first := got[0]
	if !first.Time.Equal(base) || first.Fields["_msg"] != "build step 1" || first.Fields["build"] != "b1" ||
		first.Fields["level"] != "info" || !strings.Contains(first.Fields["_stream"], `build="b1"`) {
		t.Errorf("first line %+v; want its time %s, fields and stream", first, base)
	}

	// limit keeps the newest lines; start and end bound the time.
	got, err := c.Query(ctx, `source:=build`, 2, time.Time{}, time.Time{})
	if err != nil || msgs(got) != "build step 2|build step 3" {
		t.Errorf("limit 2: %q, %v; want the two newest, oldest first", msgs(got), err)
	}
	got, err = c.Query(ctx, `source:=build`, 0, base.Add(500*time.Millisecond), base.Add(1500*time.Millisecond))
	if err != nil || msgs(got) != "build step 2" {
		t.Errorf("time window: %q, %v; want only step 2", msgs(got), err)
	}
	got, err = c.Query(ctx, `source:=build "step 3"`, 0, time.Time{}, time.Time{})
	if err != nil || msgs(got) != "build step 3" {
		t.Errorf("phrase filter: %q, %v", msgs(got), err)
	}

	// VictoriaLogs' own verdict on a bad query comes back as ErrInvalid.
	if _, err := c.Query(ctx, `source:=(`, 10, time.Time{}, time.Time{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad query: %v, want ErrInvalid", err)
	}

	// Tail delivers lines ingested after it started.
	tailCtx, stopTail := context.WithCancel(ctx)
	seen := make(chan Line, 10)
	tailDone := make(chan error, 1)
	go func() {
		tailDone <- c.Tail(tailCtx, `source:=tail`, time.Minute, func(l Line) error { seen <- l; return nil })
	}()
	// No pause needed: the tail starts a minute back, so it also sees a line ingested before it.
	if err := c.Ingest(ctx, []Line{{Msg: "followed line", Fields: map[string]string{"source": "tail"}}}, "source"); err != nil {
		t.Fatal(err)
	}
	select {
	case l := <-seen:
		if l.Msg != "followed line" || l.Fields["source"] != "tail" {
			t.Errorf("tail delivered %+v", l)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("tail delivered nothing within 15s")
	}
	stopTail()
	select {
	case err := <-tailDone:
		if err != nil {
			t.Errorf("Tail = %v after cancel, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Tail did not return after cancel")
	}
	if n, err := l.DiskUsage(); err != nil || n == 0 {
		t.Errorf("DiskUsage = %d, %v", n, err)
	}
}

// fakeKubeAPI serves the few read-only Kubernetes API calls vlagent's collector makes, for one
// node with one pod: it stands in for the apiserver, which is not the unit under test.
func fakeKubeAPI(t *testing.T) *httptest.Server {
	t.Helper()
	const pod = `{"metadata":{"name":"web-1","namespace":"shop-prod","resourceVersion":"7","labels":{"app":"shop","env":"prod"}},` +
		`"spec":{"nodeName":"node-a","containers":[{"name":"web"}]},` +
		`"status":{"podIP":"10.42.0.7","containerStatuses":[{"name":"web","containerID":"containerd://abc123"}]}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer test-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/api/v1/nodes":
			io.WriteString(w, `{"items":[{"metadata":{"name":"node-a"}}]}`)
		case r.URL.Path == "/api/v1/nodes/node-a":
			io.WriteString(w, `{"metadata":{"name":"node-a"}}`)
		case r.URL.Path == "/api/v1/namespaces":
			io.WriteString(w, `{"items":[{"metadata":{"name":"shop-prod"}}]}`)
		case r.URL.Path == "/api/v1/pods" && r.URL.Query().Get("watch") == "true":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done() // no changes until vlagent hangs up
		case r.URL.Path == "/api/v1/pods":
			io.WriteString(w, `{"metadata":{"resourceVersion":"7"},"items":[`+pod+`]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCollectorProcess runs the bundled vlagent against the bundled VictoriaLogs: it collects a
// container's log file with its Kubernetes fields, and after a restart it resumes from its
// checkpoint, neither losing the lines written while it was down nor sending any line twice.
func TestCollectorProcess(t *testing.T) {
	l := newTestLogs(t)
	api := fakeKubeAPI(t)
	dir := t.TempDir()
	kubeconfig := writeKubeconfig(t, dir, api.URL)
	logsPath := filepath.Join(dir, "containers")
	if err := os.MkdirAll(logsPath, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(logsPath, "web-1_shop-prod_web-abc123.log")
	appendCRI := func(from, to int) {
		t.Helper()
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for i := from; i <= to; i++ {
			ts := time.Now().UTC().Format(time.RFC3339Nano)
			if _, err := fmt.Fprintf(f, "%s stdout F request %d served\n", ts, i); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := CollectorConfig{
		Binary:      testbin.Path(t, "vlagent", "GLUEBOX_TEST_VLAGENT"),
		Dir:         filepath.Join(dir, "collector"),
		LogFile:     filepath.Join(dir, "vlagent.log"),
		Port:        testbin.FreePort(t),
		Kubeconfig:  kubeconfig,
		LogsPath:    logsPath,
		StoreURL:    l.InsertURL(),
		ExtraFields: map[string]string{"cluster": "test"},
		ExtraFlags:  map[string]string{"remoteWrite.flushInterval": "200ms"},
	}
	c := l.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 28*time.Second)
	defer cancel()
	query := `kubernetes.pod_namespace:=shop-prod kubernetes.container_name:=web`
	waitFor := func(want string) []Line {
		t.Helper()
		var got []Line
		eventually(t, 10*time.Second, "collected lines", func() error {
			var err error
			got, err = c.Query(ctx, query, 100, time.Time{}, time.Time{})
			if err == nil && msgs(got) != want {
				err = fmt.Errorf("got %q, want %q", msgs(got), want)
			}
			return err
		})
		return got
	}

	appendCRI(1, 3)
	col, err := NewCollector(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, col, cfg.LogFile)
	got := waitFor("request 1 served|request 2 served|request 3 served")
	f := got[0].Fields
	for k, want := range map[string]string{
		"kubernetes.pod_name": "web-1", "kubernetes.pod_namespace": "shop-prod", "kubernetes.container_name": "web",
		"kubernetes.pod_labels.app": "shop", "kubernetes.pod_labels.env": "prod", "cluster": "test",
	} {
		if f[k] != want {
			t.Errorf("field %s = %q, want %q (fields %v)", k, f[k], want, f)
		}
	}

	stop()
	if _, err := os.Stat(cfg.CheckpointsFile()); err != nil {
		t.Fatalf("no checkpoints after a clean stop: %v", err)
	}
	appendCRI(4, 5) // written while the collector is down

	col2, err := NewCollector(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start(t, col2, cfg.LogFile)
	// A line appended after the restart arrives after anything re-read from the file's start,
	// so once it is there, a resend would be too.
	appendCRI(6, 6)
	want := "request 1 served|request 2 served|request 3 served|request 4 served|request 5 served|request 6 served"
	waitFor(want)
	if got, err := c.Query(ctx, query, 100, time.Time{}, time.Time{}); err != nil || msgs(got) != want {
		t.Errorf("after restart: %q, %v; want each line exactly once", msgs(got), err)
	}
}

// writeKubeconfig writes a kubeconfig for the fake API at server into dir and returns its path.
func writeKubeconfig(t *testing.T, dir, server string) string {
	t.Helper()
	kubeconfig := filepath.Join(dir, "kubeconfig.yaml")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {token: test-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, server)), 0o600); err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}
