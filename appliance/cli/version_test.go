package cli

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
	gbembed "github.com/gluebox/gluebox/embed"
)

// pins reads the required module versions of the go.mod files (paths from the repository
// root); the first file naming a module wins.
func pins(t *testing.T, root string, files ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		inRequire := false
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "//")
			fields := strings.Fields(line)
			switch {
			case len(fields) == 2 && fields[0] == "require" && fields[1] == "(":
				inRequire = true
				continue
			case len(fields) == 1 && fields[0] == ")":
				inRequire = false
				continue
			case len(fields) == 3 && fields[0] == "require":
				fields = fields[1:]
			case !inRequire:
				continue
			}
			if len(fields) == 2 {
				if _, ok := out[fields[0]]; !ok {
					out[fields[0]] = fields[1]
				}
			}
		}
	}
	return out
}

// builtGluebox is the binary `make build` made (or GLUEBOX_BIN).
func builtGluebox(t *testing.T, root string) string {
	t.Helper()
	bin := os.Getenv("GLUEBOX_BIN")
	if bin == "" {
		bin = filepath.Join(root, "bin", "gluebox")
	}
	if _, err := os.Stat(bin); err != nil {
		testbin.RequireReal(t, fmt.Sprintf("the built gluebox is missing (%v): run `make build` or set GLUEBOX_BIN", err))
	}
	return bin
}

// TestVersion checks what the binary `make build` made says about its versions: its own
// version stamped, and Kubernetes, kine and every bundled program at the versions go.mod and
// embed/*/go.mod pin. An unstamped build says "dev" and "v0.0.0-master+$Format".
func TestVersion(t *testing.T) {
	root, err := testbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := builtGluebox(t, root)
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "GLUEBOX_DATA_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s version printed %q, not \"name version\"", bin, line)
		}
		got[name] = v
	}
	if v := got["gluebox"]; v == "" || v == "dev" {
		t.Errorf("gluebox version %q: the Makefile's -X .../appliance/version.Version stamp is missing", v)
	}
	if v := got["go"]; !strings.HasPrefix(v, "go1.") {
		t.Errorf("go version %q", v)
	}
	mod := pins(t, root, "go.mod")
	tools := pins(t, root, "embed/tools/go.mod", "embed/obs/go.mod", "embed/buildkit/go.mod")
	want := map[string]string{
		"gluebox":          got["gluebox"],
		"go":               got["go"],
		"kubernetes":       mod["k8s.io/kubernetes"],
		"kine":             mod["github.com/k3s-io/kine"],
		"alertmanager":     tools["github.com/prometheus/alertmanager"],
		"buildkitd":        tools["github.com/moby/buildkit"],
		"cni-plugins":      tools["github.com/containernetworking/plugins"],
		"containerd":       tools["github.com/containerd/containerd/v2"],
		"coredns":          tools["github.com/coredns/coredns"],
		"runc":             tools["github.com/opencontainers/runc"],
		"victoria-logs":    tools["github.com/VictoriaMetrics/VictoriaLogs"],
		"vlagent":          tools["github.com/VictoriaMetrics/VictoriaLogs"],
		"victoria-metrics": tools["github.com/VictoriaMetrics/VictoriaMetrics"],
		"vmalert":          tools["github.com/VictoriaMetrics/VictoriaMetrics"],
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s version against the go.mod pins (-want +got):\n%s", bin, diff)
	}
}

// TestBundledProgramVersions runs every program of the bundle (the one embedded in gluebox)
// and checks that it reports the version embed/*/go.mod pins: the Makefile stamps each one
// with -ldflags -X, and a lost stamp shows as "version unknown", "dev" or a placeholder.
func TestBundledProgramVersions(t *testing.T) {
	root, err := testbin.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := bundle.Extract(t.TempDir(), gbembed.Bundle(), gbembed.BundleSHA256())
	if err != nil {
		testbin.RequireReal(t, "no real bundle embedded (run `make bundle`): "+err.Error())
	}
	tools := pins(t, root, "embed/tools/go.mod", "embed/obs/go.mod", "embed/buildkit/go.mod")
	pin := func(module string, keepV bool) string {
		t.Helper()
		v := tools[module]
		if v == "" {
			t.Fatalf("no pin of %s in embed/*/go.mod", module)
		}
		if !keepV {
			v = strings.TrimPrefix(v, "v")
		}
		return v
	}
	const (
		containerd = "github.com/containerd/containerd/v2"
		cni        = "github.com/containernetworking/plugins"
		vm         = "github.com/VictoriaMetrics/VictoriaMetrics"
		vl         = "github.com/VictoriaMetrics/VictoriaLogs"
	)
	for _, tc := range []struct {
		program string
		args    []string
		want    string // a line of the output, or its start followed by a space
	}{
		{"containerd", []string{"--version"}, "containerd " + containerd + " " + pin(containerd, true)},
		{"ctr", []string{"--version"}, "ctr " + containerd + " " + pin(containerd, true)},
		{"containerd-shim-runc-v2", []string{"-v"}, "Version:  " + pin(containerd, true)},
		{"runc", []string{"--version"}, "runc version " + pin("github.com/opencontainers/runc", false)},
		{"coredns", []string{"-version"}, "CoreDNS-" + pin("github.com/coredns/coredns", false)},
		{"bridge", nil, "CNI bridge plugin " + pin(cni, true)},
		{"loopback", nil, "CNI loopback plugin " + pin(cni, true)},
		{"host-local", nil, "CNI host-local plugin " + pin(cni, true)},
		{"portmap", nil, "CNI portmap plugin " + pin(cni, true)},
		{"victoria-metrics", []string{"-version"}, "victoria-metrics-" + pin(vm, true)},
		{"vmalert", []string{"-version"}, "victoria-metrics-" + pin(vm, true)},
		{"victoria-logs", []string{"-version"}, "victoria-logs-" + pin(vl, true)},
		{"vlagent", []string{"-version"}, "victoria-logs-" + pin(vl, true)},
		{"alertmanager", []string{"--version"}, "alertmanager, version " + pin("github.com/prometheus/alertmanager", false)},
		{"buildkitd", []string{"--version"}, "buildkitd github.com/moby/buildkit " + pin("github.com/moby/buildkit", true)},
	} {
		t.Run(tc.program, func(t *testing.T) {
			// CNI plugins print their version when CNI_COMMAND is unset; the others exit 0.
			out, _ := exec.Command(dir.Bin(tc.program), tc.args...).CombinedOutput()
			for _, line := range strings.Split(string(out), "\n") {
				line = strings.TrimSpace(line)
				if line == tc.want || strings.HasPrefix(line, tc.want+" ") {
					return
				}
			}
			t.Errorf("%s %s printed no line %q:\n%s", tc.program, strings.Join(tc.args, " "), tc.want, out)
		})
	}
}
