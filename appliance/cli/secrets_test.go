package cli

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
)

// serveAPI serves the routes of owners on the API socket of a fresh data dir, as `gluebox
// server` does, and returns the data dir for --data-dir.
func serveAPI(t *testing.T, owners ...api.Registrar) string {
	t.Helper()
	dir := t.TempDir()
	l, err := paths.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, o := range owners {
		o.Register(mux)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.Serve(ctx, l.Socket(), mux) }()
	t.Cleanup(func() { cancel(); <-done })
	testbin.Eventually(t, 5*time.Second, "the API socket", func() bool {
		_, err := os.Stat(l.Socket())
		return err == nil
	})
	return dir
}

// newTestSecrets opens a real secret store and its backups in a temp dir.
func newTestSecrets(t *testing.T) (*secrets.Service, secrets.Config) {
	t.Helper()
	root := t.TempDir()
	cfg := secrets.Config{Dir: filepath.Join(root, "secrets"), BackupDir: filepath.Join(root, "backups"), BackupInterval: -1, ScryptWorkFactor: 10}
	s, err := secrets.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

// runWithInput runs the gluebox command line with stdin.
func runWithInput(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestSecretCommandsThroughAPI(t *testing.T) {
	s, cfg := newTestSecrets(t)
	dataDir := serveAPI(t, s)
	envFile := filepath.Join(t.TempDir(), "app.env")
	os.WriteFile(envFile, []byte("A=1\nB=\"two\"\n"), 0o600)

	steps := []struct {
		stdin   string
		args    []string
		want    string // substring of the output, or of the error when wantErr
		wantErr bool
	}{
		{"s3cret-from-stdin\n", []string{"secret", "set", "secret/app", "DB_PASSWORD", "-"}, "secret/app DB_PASSWORD set (version 1)", false},
		{"", []string{"secret", "set", "secret/app", "USER", "admin"}, "version 2", false},
		{"", []string{"secret", "get", "secret/app", "DB_PASSWORD"}, "s3cret-from-stdin\n", false},
		{"", []string{"secret", "get", "secret/app"}, `USER="admin"`, false},
		{"", []string{"secret", "get", "secret/app", "--version", "1"}, `DB_PASSWORD="s3cret-from-stdin"`, false},
		{"", []string{"secret", "list"}, "DB_PASSWORD,USER", false},
		{"", []string{"secret", "history", "secret/app"}, "USER", false},
		{"", []string{"secret", "rollback", "secret/app", "1"}, "now version 3", false},
		{"", []string{"secret", "import", "secret/app", envFile}, "imported 2 keys into secret/app (version 4): A, B", false},
		{"", []string{"secret", "delete", "secret/app", "A"}, "deleted A from secret/app (version 5)", false},
		{"", []string{"secret", "audit"}, "delete-keys", false},
		{"", []string{"secret", "rotate-key"}, "pass --yes", true},
		{"", []string{"secret", "rotate-key", "--yes"}, "rotated: values are now sealed to age1", false},
		{"", []string{"secret", "get", "secret/app", "B"}, "two\n", false},
		{"", []string{"backup", "create"}, "written and verified", false},
		{"", []string{"backup", "list"}, "secrets-", false},
		{"", []string{"secret", "set", "secret/bad path", "K", "v"}, "has the character ' '", true},
		{"", []string{"secret", "get", "secret/missing"}, "secret path secret/missing: not found", true},
		{"", []string{"secret", "rollback", "secret/app", "x"}, "is not a positive number", true},
		{"", []string{"backup", "verify", "nope.snap.age"}, "not found", true},
		{"", []string{"backup", "restore", "x"}, "pass --yes", true},
		{"", []string{"secret", "delete", "secret/app"}, "deleted secret/app", false},
	}
	for _, st := range steps {
		out, err := runWithInput(t, st.stdin, append(st.args, "--data-dir", dataDir)...)
		got := out
		if st.wantErr {
			if err == nil {
				t.Errorf("%v: no error; output %q", st.args, out)
				continue
			}
			got = err.Error()
		} else if err != nil {
			t.Errorf("%v: %v", st.args, err)
			continue
		}
		if !strings.Contains(got, st.want) {
			t.Errorf("%v: got %q, want it to contain %q", st.args, got, st.want)
		}
	}

	// Restore through the CLI brings back the deleted path.
	list, _ := s.Backups()
	if len(list) == 0 {
		t.Fatal("no backups")
	}
	out, err := runWithInput(t, "", "backup", "verify", list[0].File, "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, "is good") {
		t.Fatalf("verify: %v %q", err, out)
	}
	out, err = runWithInput(t, "", "backup", "restore", "--yes", filepath.Join(cfg.BackupDir, list[0].File), "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, "the replaced store is at") {
		t.Fatalf("restore: %v %q", err, out)
	}
	out, err = runWithInput(t, "", "secret", "get", "secret/app", "B", "--data-dir", dataDir)
	if err != nil || out != "two\n" {
		t.Fatalf("after restore: %v %q", err, out)
	}
}

func TestRegistryCommandsThroughAPI(t *testing.T) {
	reg, err := registry.New(registry.Config{Dir: t.TempDir(), Addr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	dataDir := serveAPI(t, reg)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"registry", "list"}, "REPOSITORY"},
		{[]string{"registry", "gc", "--dry-run"}, "would delete 0 manifests"},
	} {
		out, err := runWithInput(t, "", append(tc.args, "--data-dir", dataDir)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v = %q, %v; want it to contain %q", tc.args, out, err, tc.want)
		}
	}
	_, err = runWithInput(t, "", "registry", "gc", "--keep", "nonsense", "--data-dir", dataDir)
	if err == nil || !strings.Contains(err.Error(), `cannot keep "nonsense"`) {
		t.Errorf("gc --keep nonsense: %v", err)
	}
}
