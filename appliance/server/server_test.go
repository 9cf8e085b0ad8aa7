package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/gluebox/gluebox/appliance/config"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/supervise"
)

func TestRegistryMirrors(t *testing.T) {
	both := func(hostport string) map[string]string {
		ep := "http://" + hostport
		return map[string]string{hostport: ep, "registry.gluebox.local": ep}
	}
	for _, tc := range []struct {
		addr string
		want map[string]string
	}{
		{"127.0.0.1:5000", both("127.0.0.1:5000")},
		{":5000", both("127.0.0.1:5000")},
		{"0.0.0.0:5000", both("127.0.0.1:5000")},
		{"[::]:5000", both("127.0.0.1:5000")},
		{"192.168.1.20:5001", both("192.168.1.20:5001")},
		{"[::1]:5000", both("[::1]:5000")},
		{"localhost:5000", both("localhost:5000")},
		{"nonsense", nil},
		{"", nil},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, registryMirrors(tc.addr)); diff != "" {
				t.Errorf("registryMirrors(%q) (-want +got)\n%s", tc.addr, diff)
			}
		})
	}
}

func TestHostResolvConf(t *testing.T) {
	got := hostResolvConf()
	want := "/etc/resolv.conf"
	if _, err := os.Stat("/run/systemd/resolve/resolv.conf"); err == nil {
		want = "/run/systemd/resolve/resolv.conf" // never systemd-resolved's 127.0.0.53 stub
	}
	if got != want {
		t.Errorf("hostResolvConf = %q, want %q", got, want)
	}
}

func testLayout(t *testing.T) paths.Layout {
	t.Helper()
	l, err := paths.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLockDataDir(t *testing.T) {
	l := testLayout(t)
	unlock, err := LockDataDir(l)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDataDir(l)
	if err == nil {
		t.Fatal("a second lock on the same data dir succeeded")
	}
	if !strings.Contains(err.Error(), "another gluebox is using data dir "+l.Root()) {
		t.Errorf("error %q does not name the data dir", err)
	}
	// Another data dir is independent.
	other, err := LockDataDir(testLayout(t))
	if err != nil {
		t.Errorf("lock of another data dir: %v", err)
	} else {
		other()
	}
	unlock()
	again, err := LockDataDir(l)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}

func TestLockDataDirMissing(t *testing.T) {
	l, err := paths.New(filepath.Join(t.TempDir(), "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockDataDir(l); err == nil || !strings.Contains(err.Error(), "cannot open lock file") {
		t.Errorf("LockDataDir on a missing dir = %v", err)
	}
}

func TestPrepareDataDir(t *testing.T) {
	l := testLayout(t)
	if err := prepareDataDir(l); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{l.RunDir(), l.LogDir()} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
	if _, err := os.Stat(l.Join(".write-test")); !os.IsNotExist(err) {
		t.Errorf("write probe left behind: %v", err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad, err := paths.New(filepath.Join(file, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if err := prepareDataDir(bad); err == nil || !strings.Contains(err.Error(), "pick a writable --data-dir") {
		t.Errorf("prepareDataDir below a file = %v", err)
	}
}

// validConfig returns the flag defaults of `gluebox server` with the data dir in a temp dir.
func validConfig(t *testing.T) config.Server {
	t.Helper()
	var cfg config.Server
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	cfg.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	return cfg
}

func TestNewValidates(t *testing.T) {
	cfg := validConfig(t)
	cfg.RegistryAddr = "nonsense"
	if _, err := New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "--registry-addr") {
		t.Errorf("New with a bad registry address = %v", err)
	}
}

func TestStatusBeforeRun(t *testing.T) {
	cfg := validConfig(t)
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/status = %d %s", rec.Code, rec.Body)
	}
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != "starting" || st.DataDir != cfg.DataDir || st.APIServer != "https://127.0.0.1:6443" ||
		st.Kubeconfig != filepath.Join(cfg.DataDir, "kubeconfig", "admin.yaml") || len(st.Components) != 0 {
		t.Errorf("status = %+v", st)
	}
}

// TestStatusDegraded: a ready node whose non-critical component keeps failing reports phase
// degraded, with the component's error and restarts; once it works again, ready.
func TestStatusDegraded(t *testing.T) {
	s, err := New(validConfig(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g := supervise.NewGroup(slog.New(slog.DiscardHandler), supervise.GroupConfig{
		ReadyTimeout: 5 * time.Second, StopTimeout: 5 * time.Second,
		Restart: supervise.Backoff{Initial: time.Millisecond, Max: time.Millisecond},
	})
	t.Cleanup(func() { _ = g.Stop() })
	var fixed atomic.Bool
	flaky := supervise.Func{N: "log-shipper", R: func(ctx context.Context) error {
		if !fixed.Load() {
			return errors.New("no route to the log store")
		}
		<-ctx.Done()
		return nil
	}, Ready: func(ctx context.Context) error { // never ready while broken
		if !fixed.Load() {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	if err := g.Start(context.Background(), flaky); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.group, s.phase = g, "ready"
	s.mu.Unlock()
	phase := func(want string) Status {
		t.Helper()
		var st Status
		testbin.Eventually(t, 10*time.Second, "phase "+want, func() bool { st = s.Status(); return st.Phase == want })
		return st
	}
	st := phase("degraded")
	if c := st.Components[0]; !c.Degraded() || c.Restarts == 0 || !strings.Contains(c.Error, "no route to the log store") {
		t.Errorf("component %+v, want degraded with its error and restarts", c)
	}
	fixed.Store(true)
	phase("ready")
}
