package cli

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// runCLI runs the gluebox command line with args and returns its output and error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// writeFile writes content to name in a temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// unusableDataDir is a data dir below a regular file: should a test's `server` command ever get
// past validation, it fails at once instead of booting a node on this host.
func unusableDataDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(writeFile(t, "not-a-dir", ""), "data")
}

func TestServerRefusesBadInputBeforeStarting(t *testing.T) {
	emptyConfig := writeFile(t, "empty.yaml", "")
	badKey := writeFile(t, "bad.yaml", "domain: example.org\nregistry-adr: 127.0.0.1:5000\n")
	badValue := writeFile(t, "value.yaml", "api-port: lots\n")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown key in config file", []string{"--config", badKey},
			[]string{badKey + ":2:", `unknown key "registry-adr"`}},
		{"bad value in config file", []string{"--config", badValue},
			[]string{badValue + ":1:", `key "api-port"`}},
		{"missing config file", []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")},
			[]string{"cannot read config file", "missing.yaml"}},
		{"bad registry address", []string{"--config", emptyConfig, "--registry-addr", "nonsense"},
			[]string{`--registry-addr "nonsense" is not host:port`}},
		{"bad cluster CIDR", []string{"--config", emptyConfig, "--cluster-cidr", "10.42.0.0/28"},
			[]string{`--cluster-cidr "10.42.0.0/28" is too small`}},
		{"bad node IP", []string{"--config", emptyConfig, "--node-ip", "fe80::1"},
			[]string{`--node-ip "fe80::1" is not an IPv4 address`}},
		{"unknown flag", []string{"--bogus-flag"},
			[]string{"unknown flag: --bogus-flag"}},
		{"positional argument", []string{"--config", emptyConfig, "extra"},
			[]string{`unknown command "extra"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"server", "--data-dir", unusableDataDir(t)}, tc.args...)
			_, err := runCLI(t, args...)
			if err == nil {
				t.Fatal("gluebox server accepted bad input")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestServerConfigFileValidated(t *testing.T) {
	// A value from the file goes through the same validation as the flag.
	cfg := writeFile(t, "c.yaml", "registry-addr: nonsense\n")
	_, err := runCLI(t, "server", "--data-dir", unusableDataDir(t), "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), `--registry-addr "nonsense"`) {
		t.Fatalf("err = %v, want the validation error of the file's registry-addr", err)
	}
	// The command line wins over the file.
	_, err = runCLI(t, "server", "--data-dir", unusableDataDir(t), "--config", cfg, "--registry-addr", "127.0.0.1:5000", "--api-port", "0")
	if err == nil || strings.Contains(err.Error(), "registry-addr") || !strings.Contains(err.Error(), "--api-port 0") {
		t.Fatalf("err = %v, want only the --api-port error", err)
	}
}

func TestStatusWithoutServer(t *testing.T) {
	dir := t.TempDir()
	_, err := runCLI(t, "status", "--data-dir", dir)
	if err == nil {
		t.Fatal("status succeeded without a server")
	}
	for _, want := range []string{"gluebox server is not running", filepath.Join(dir, "run", "gluebox.sock")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestCleanupWithoutDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := runCLI(t, "cleanup", "--data-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "no gluebox data dir at "+dir) {
		t.Fatalf("cleanup of a missing data dir = %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cleanup created the data dir: %v", err)
	}
}

// TestVersionListsEveryComponent checks the shape of `gluebox version` in-process (the test
// binary is not stamped; TestVersion checks the values of the built binary).
func TestVersionListsEveryComponent(t *testing.T) {
	t.Setenv("GLUEBOX_DATA_DIR", t.TempDir())
	out, err := runCLI(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if name != "go" && name != "kine" { // from build info, which a test binary lacks in part
			names = append(names, name)
		}
	}
	want := []string{"gluebox", "kubernetes"}
	for _, line := range bundledVersions() {
		name, _, _ := strings.Cut(line, " ")
		want = append(want, name)
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("gluebox version lists (-want +got):\n%s", diff)
	}
}

func TestCtrUsesDataDirFlag(t *testing.T) {
	// The default data dir (from the environment) holds no bundle either, so a wrong choice
	// can only fail, never run a real ctr.
	envDir := t.TempDir()
	t.Setenv("GLUEBOX_DATA_DIR", envDir)
	flagDir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"flag before the command", []string{"--data-dir", flagDir, "ctr", "images", "ls"}, flagDir},
		{"flag with =", []string{"--data-dir=" + flagDir, "ctr", "images", "ls"}, flagDir},
		{"flag after the command", []string{"ctr", "--data-dir", flagDir, "images", "ls"}, flagDir},
		{"environment", []string{"ctr", "images", "ls"}, envDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCLI(t, tc.args...)
			want := "no bundled ctr at " + filepath.Join(tc.want, "bin", "current", "bin", "ctr")
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want %q", err, want)
			}
		})
	}
}

func TestTakeDataDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantDir string
		rest    []string
	}{
		{"none", []string{"get", "pods"}, "/default", []string{"get", "pods"}},
		{"separate value", []string{"--data-dir", "/x", "get", "pods"}, "/x", []string{"get", "pods"}},
		{"with =", []string{"--data-dir=/x", "get"}, "/x", []string{"get"}},
		{"last one wins", []string{"--data-dir", "/x", "--data-dir=/y", "get"}, "/y", []string{"get"}},
		{"only leading ones", []string{"exec", "p", "--", "tool", "--data-dir", "/x"}, "/default", []string{"exec", "p", "--", "tool", "--data-dir", "/x"}},
		{"flag without value is left alone", []string{"--data-dir"}, "/default", []string{"--data-dir"}},
		{"empty", nil, "/default", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &globals{dataDir: "/default"}
			rest := g.takeDataDir(tc.args)
			if g.dataDir != tc.wantDir {
				t.Errorf("data dir = %q, want %q", g.dataDir, tc.wantDir)
			}
			if diff := cmp.Diff(tc.rest, rest); diff != "" {
				t.Errorf("remaining args (-want +got)\n%s", diff)
			}
		})
	}
}

func TestKubectlUsesDataDirFlag(t *testing.T) {
	t.Setenv("GLUEBOX_DATA_DIR", t.TempDir())
	t.Setenv("KUBECONFIG", "") // empty counts as unset; restored after the test
	flagDir := t.TempDir()
	// kubectl prints to the process's stdout; keep the test output clean.
	stdout := os.Stdout
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout = devnull
	args := os.Args
	t.Cleanup(func() { os.Stdout = stdout; devnull.Close(); os.Args = args })
	// On an unknown flag kubectl would exit the test binary, so a regression fails loudly.
	if _, err := runCLI(t, "--data-dir", flagDir, "kubectl", "version", "--client"); err != nil {
		t.Fatal(err)
	}
	// The kubeconfig reaches kubectl as its flag; the process environment stays as it was.
	want := []string{"kubectl", "--kubeconfig=" + filepath.Join(flagDir, "kubeconfig", "admin.yaml"), "version", "--client"}
	if diff := cmp.Diff(want, os.Args); diff != "" {
		t.Errorf("kubectl's arguments (-want +got)\n%s", diff)
	}
	if got := os.Getenv("KUBECONFIG"); got != "" {
		t.Errorf("KUBECONFIG = %q, want it left unset", got)
	}
}

// fakeAPI serves handler on the API socket of a fresh data dir and returns the data dir.
func fakeAPI(t *testing.T, handler http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gbx-cli") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "run", "gluebox.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return dir
}

func TestSecretBindCommands(t *testing.T) {
	type request struct{ Method, Path, Body string }
	var (
		mu  sync.Mutex
		got []request
	)
	dir := fakeAPI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, request{r.Method, r.URL.Path, strings.TrimSpace(string(b))})
		mu.Unlock()
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `[{"namespace":"web","name":"db","path":"secret/web-db","error":"no such path"}]`)
			return
		}
		io.WriteString(w, "{}")
	}))
	for _, tc := range []struct {
		name    string
		args    []string
		wantReq *request
		wantOut string
		wantErr string
	}{
		{"bind", []string{"secret", "bind", "web", "db", "secret/web-db", "--key", "PASSWORD=password"},
			&request{"PUT", "/v1/secret-bindings", `{"namespace":"web","name":"db","path":"secret/web-db","keys":{"PASSWORD":"password"}}`},
			"secret web/db follows secret/web-db\n", ""},
		{"bind with a bad key mapping", []string{"secret", "bind", "web", "db", "secret/web-db", "--key", "PASSWORD"},
			nil, "", `--key "PASSWORD" is not secretKey=storeKey`},
		{"bind with a bad namespace", []string{"secret", "bind", "Web_1", "db", "secret/web-db"},
			nil, "", `namespace "Web_1" is invalid`},
		{"unbind", []string{"secret", "unbind", "web", "db"},
			&request{"DELETE", "/v1/secret-bindings/web/db", ""}, "", ""},
		{"bindings", []string{"secret", "bindings"},
			&request{"GET", "/v1/secret-bindings", ""}, "web/db", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			out, err := runCLI(t, append(tc.args, "--data-dir", dir)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var want []request
			if tc.wantReq != nil {
				want = []request{*tc.wantReq}
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("API requests (-want +got)\n%s", diff)
			}
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output %q lacks %q", out, tc.wantOut)
			}
		})
	}
}
