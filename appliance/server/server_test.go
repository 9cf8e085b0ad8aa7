package server

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/spf13/pflag"
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

	"github.com/gluebox/gluebox/appliance/config"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
	"github.com/gluebox/gluebox/appliance/supervise"
)

func newBindingFile(t *testing.T) *bindingFile {
	t.Helper()
	return &bindingFile{path: filepath.Join(t.TempDir(), "state", "secret-bindings.json")}
}

func TestBindingFileRoundTrip(t *testing.T) {
	f := newBindingFile(t)
	bs, err := f.load()
	if err != nil || bs != nil {
		t.Fatalf("load of a missing file = %v, %v; want no bindings and no error", bs, err)
	}
	web := kubesync.Binding{Namespace: "web", Name: "db", Path: "apps/web/db", Keys: map[string]string{"PASSWORD": "password"}}
	api := kubesync.Binding{Namespace: "api", Name: "token", Path: "apps/api/token"}
	add := func(b kubesync.Binding) func([]kubesync.Binding) ([]kubesync.Binding, error) {
		return func(bs []kubesync.Binding) ([]kubesync.Binding, error) { return append(bs, b), nil }
	}
	for _, b := range []kubesync.Binding{web, api} {
		if err := f.update(add(b)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	// Stored sorted by namespace/name, whatever order they were added in.
	if diff := cmp.Diff([]kubesync.Binding{api, web}, got); diff != "" {
		t.Errorf("bindings (-want +got)\n%s", diff)
	}
	if st, err := os.Stat(f.path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("binding file mode = %v, %v; want 0600", st.Mode(), err)
	}
	if _, err := os.Stat(f.path + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary file left behind: %v", err)
	}

	// A failing change leaves the file as it was.
	boom := errors.New("refused")
	err = f.update(func(bs []kubesync.Binding) ([]kubesync.Binding, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Errorf("update = %v, want the change's error", err)
	}
	after, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, after); diff != "" {
		t.Errorf("a failed update changed the file (-before +after)\n%s", diff)
	}

	// Removing every binding leaves a file that loads as no bindings.
	if err := f.update(func([]kubesync.Binding) ([]kubesync.Binding, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if bs, err := f.load(); err != nil || len(bs) != 0 {
		t.Errorf("after removing all: %v, %v", bs, err)
	}
}

func TestBindingFileCorrupt(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"truncated", `[{"namespace": "web"`},
		{"not a list", `{"namespace": "web"}`},
		{"garbage", "\x00\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newBindingFile(t)
			if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(f.path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			for what, err := range map[string]error{
				"load":   func() error { _, err := f.load(); return err }(),
				"update": f.update(func(bs []kubesync.Binding) ([]kubesync.Binding, error) { return bs, nil }),
			} {
				if err == nil || !strings.Contains(err.Error(), f.path+" is corrupt") || !strings.Contains(err.Error(), "gluebox secret bind") {
					t.Errorf("%s = %v, want a corrupt-file error naming the file and the fix", what, err)
				}
			}
			if b, _ := os.ReadFile(f.path); string(b) != tc.content {
				t.Errorf("a corrupt file was overwritten: %q", b)
			}
		})
	}
}

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
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := s.Status()
			if st.Phase == want {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("status %+v, want phase %s", st, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	st := phase("degraded")
	if c := st.Components[0]; !c.Degraded() || c.Restarts == 0 || !strings.Contains(c.Error, "no route to the log store") {
		t.Errorf("component %+v, want degraded with its error and restarts", c)
	}
	fixed.Store(true)
	phase("ready")
}
