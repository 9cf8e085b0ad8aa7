package layering

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/gluebox/gluebox/"

// foundations may import only each other (and outside modules): everything else builds on them.
var foundations = map[string]bool{
	"appliance/api": true, "appliance/atomicfile": true, "appliance/bundle": true, "appliance/config": true,
	"appliance/hostcheck": true, "appliance/kubeutil": true, "appliance/ociimage": true, "appliance/paths": true,
	"appliance/pki": true, "appliance/supervise": true, "appliance/version": true, "appliance/internal/victoria": true,
	"embed": true,
}

// testOnly are helpers for tests and benchmarks; production packages never import them.
var testOnly = []string{
	"bench", "appliance/e2e", "appliance/testnode", "appliance/internal/testbin", "appliance/internal/golden",
	"appliance/gitops/source/gittest",
}

// importers says which packages alone may import a package.
var importers = map[string][]string{
	"appliance/cli":    {"cmd/gluebox-core"},
	"appliance/server": {"appliance/cli"},
	// The typed client is for the programs that talk to a running server, not for components.
	"appliance/client": {"appliance/cli", "appliance/console", "bench", "appliance/e2e"},
}

// graph returns each package of the module (path relative to it) with its non-test imports
// inside the module.
func graph(t *testing.T) map[string][]string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	cmd := exec.Command("go", "list", "-e", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	g := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], module) {
			continue
		}
		pkg := strings.TrimPrefix(f[0], module)
		g[pkg] = nil
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, module) {
				g[pkg] = append(g[pkg], strings.TrimPrefix(imp, module))
			}
		}
	}
	if len(g) < 20 {
		t.Fatalf("go list found only %d packages: %s", len(g), out)
	}
	return g
}

func within(pkg, tree string) bool { return pkg == tree || strings.HasPrefix(pkg, tree+"/") }

func TestImportRules(t *testing.T) {
	g := graph(t)
	var bad []string
	for pkg, imps := range g {
		for _, imp := range imps {
			if why := violation(pkg, imp); why != "" {
				bad = append(bad, pkg+" imports "+imp+": "+why)
			}
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// violation says why pkg must not import imp, or "" if it may.
func violation(pkg, imp string) string {
	if allowed, ok := importers[imp]; ok {
		for _, a := range allowed {
			if pkg == a {
				return ""
			}
		}
		return "only " + strings.Join(allowed, ", ") + " may import it"
	}
	for _, tOnly := range testOnly {
		if within(imp, tOnly) {
			for _, self := range testOnly {
				if within(pkg, self) {
					return ""
				}
			}
			return "it is a test or benchmark helper"
		}
	}
	if foundations[pkg] && !foundations[imp] {
		return "a foundation package imports only other foundations"
	}
	return ""
}

// TestRulesCatchViolations keeps the rules themselves honest: each forbidden edge is refused.
func TestRulesCatchViolations(t *testing.T) {
	for _, c := range []struct{ pkg, imp string }{
		{"appliance/registry", "appliance/server"},
		{"appliance/gitops/engine", "appliance/cli"},
		{"appliance/secrets", "appliance/client"},
		{"appliance/server", "appliance/testnode"},
		{"appliance/supervise", "appliance/registry"},
		{"appliance/frontdoor", "bench"},
	} {
		if violation(c.pkg, c.imp) == "" {
			t.Errorf("%s importing %s is not refused", c.pkg, c.imp)
		}
	}
	for _, c := range []struct{ pkg, imp string }{
		{"appliance/cli", "appliance/server"},
		{"appliance/server", "appliance/registry"},
		{"bench", "appliance/testnode"},
		{"appliance/e2e", "appliance/testnode"},
		{"appliance/registry", "appliance/api"},
	} {
		if why := violation(c.pkg, c.imp); why != "" {
			t.Errorf("%s importing %s is refused: %s", c.pkg, c.imp, why)
		}
	}
}
