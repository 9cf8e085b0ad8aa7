package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/api"
)

// newTestService starts a Service in a fresh data dir; it is closed at the end of the test.
func newTestService(t *testing.T, mutate func(*Config)) *Service {
	t.Helper()
	root := t.TempDir()
	cfg := Config{Dir: filepath.Join(root, "secrets"), BackupDir: filepath.Join(root, "backups"), BackupInterval: -1, ScryptWorkFactor: 10}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Dir: "/d/secrets", BackupDir: "/d/backups"}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"zero extras are fine", func(c *Config) {}, ""},
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir is empty"},
		{"no backup dir", func(c *Config) { c.BackupDir = "" }, "BackupDir is empty"},
		{"negative keep", func(c *Config) { c.KeepVersions = -1 }, "KeepVersions is -1"},
		{"negative backup keep", func(c *Config) { c.BackupKeep = -2 }, "BackupKeep is -2"},
		{"tiny interval", func(c *Config) { c.BackupInterval = time.Second }, "BackupInterval is 1s"},
		{"disabled schedule", func(c *Config) { c.BackupInterval = -1 }, ""},
		{"bad work factor", func(c *Config) { c.ScryptWorkFactor = 40 }, "ScryptWorkFactor is 40"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRunTakesVerifiedBackupAndStops(t *testing.T) {
	s := newTestService(t, func(c *Config) { c.BackupInterval = time.Hour; c.BackupKeep = 2 })
	mustSet(t, s.Store(), "secret/app", "K", "v")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	if err := s.WaitReady(rctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for s.Status().NewestVerified.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("no verified backup; status %+v", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil on cancel", err)
	}
	st := s.Status()
	if st.Secrets != 1 || st.NewestVerifiedAge == "" || st.LastBackupError != "" || st.StorePath != s.Store().DBPath() {
		t.Errorf("status = %+v", st)
	}
	for range 3 {
		if _, err := s.BackupNow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := s.Backups()
	if len(list) != 2 {
		t.Errorf("%d backups kept, want 2", len(list))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

type fakeCopy struct{ names []string }

func (f *fakeCopy) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil || n != size {
		return errors.New("short copy")
	}
	f.names = append(f.names, name)
	return nil
}

func TestBackupCopyTargetAndError(t *testing.T) {
	s := newTestService(t, nil)
	ct := &fakeCopy{}
	s.SetCopyTarget(ct)
	m, err := s.BackupNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{m.File}, ct.names); diff != "" {
		t.Errorf("copied (-want +got):\n%s", diff)
	}
	// A backup dir that cannot be created is reported in the status.
	s.cfg.BackupDir = filepath.Join(s.cfg.BackupDir, m.File, "sub")
	if _, err := s.BackupNow(context.Background()); err == nil {
		t.Fatal("backup into a file succeeded")
	}
	if st := s.Status(); st.LastBackupError == "" || st.NewestVerified.IsZero() {
		t.Errorf("status after failure = %+v", st)
	}
}

func TestAPIStatusCodes(t *testing.T) {
	s := newTestService(t, nil)
	mux := http.NewServeMux()
	s.Register(mux)
	mustSet(t, s.Store(), "secret/app", "K", "v")
	bad := filepath.Join(t.TempDir(), "secrets-x.snap.age")
	os.WriteFile(bad, []byte("junk"), 0o600)
	tests := []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"GET", "/v1/secrets", "", 200, `"secret/app"`},
		{"GET", "/v1/secrets/secret/app", "", 200, `"K": "v"`},
		{"GET", "/v1/secrets/secret/app?key=NOPE", "", 404, "key NOPE is not in secret/app"},
		{"GET", "/v1/secrets/secret/app?version=abc", "", 400, "not a positive number"},
		{"GET", "/v1/secrets/secret/none", "", 404, "not found"},
		{"GET", "/v1/secrets/nosecretprefix", "", 400, `does not start with \"secret/\"`},
		{"PUT", "/v1/secrets/secret/app", `{"values":{"A":"1"},"bogus":1}`, 400, "unknown field"},
		{"PUT", "/v1/secrets/secret/app", `{"values":{"A B":"1"}}`, 400, "has the character"},
		{"PUT", "/v1/secrets/secret/app", `{"values_base64":{"BIN":"//4="}}`, 200, `"version": 2`},
		{"GET", "/v1/secrets/secret/app?key=BIN", "", 200, `"values_base64": {
    "BIN": "//4="`},
		{"PUT", "/v1/secrets/secret/app", `{"values":{"BIG":"` + strings.Repeat("x", MaxValueSize+1) + `"}}`, 400, "1 MiB"},
		{"POST", "/v1/secrets-rollback/secret/app", `{"version":0}`, 400, "no version given"},
		{"POST", "/v1/secrets-rollback/secret/app", `{"version":77}`, 404, "not kept"},
		{"POST", "/v1/secrets-import", `{"path":"secret/app","data":"A=1\nbroken"}`, 400, "import line 2"},
		{"POST", "/v1/secrets-import", `{"path":"secret/app","format":"json","data":"{\"X\":\"1\"}"}`, 200, `"X"`},
		{"DELETE", "/v1/secrets/secret/app?key=NOPE", "", 404, "not found"},
		{"GET", "/v1/secrets-history/secret/app", "", 200, `"op": "import"`},
		{"GET", "/v1/secrets-audit?limit=x", "", 400, "not a non-negative number"},
		{"GET", "/v1/secrets-status", "", 200, `"secrets": 1`},
		{"POST", "/v1/backups/verify", `{"file":"relative/path"}`, 400, "relative path"},
		{"POST", "/v1/backups/verify", `{"file":"` + bad + `"}`, 422, "not a readable age file"},
		{"POST", "/v1/backups/restore", `{"file":"` + bad + `"}`, 422, "the live store was not touched"},
		{"POST", "/v1/backups/restore", `{"file":"missing.snap.age"}`, 404, "not found"},
		{"GET", "/v1/backups", "", 200, `[]`},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		body := rec.Body.String()
		if rec.Code != tt.status || !strings.Contains(body, tt.want) {
			if len(body) > 300 {
				body = body[:300]
			}
			t.Errorf("%s %s = %d %s, want %d containing %q", tt.method, tt.path, rec.Code, body, tt.status, tt.want)
		}
		if rec.Code >= 400 {
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
				t.Errorf("%s %s: error body %q is not {\"error\": ...}", tt.method, tt.path, body)
			}
		}
	}
}
