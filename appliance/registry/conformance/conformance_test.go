// Package conformance runs the OCI distribution-spec conformance suite
// (github.com/opencontainers/distribution-spec/conformance, a main package that cannot be
// imported) against an in-process gluebox registry on 127.0.0.1. The suite is built into a
// temporary binary with `go build`, or taken from $OCI_CONFORMANCE_BIN.
//
//	go test ./appliance/registry/conformance -run TestConformance -v
//
// It is skipped with -short. Results (results.yaml, report.html, junit.xml) land in
// $OCI_RESULTS_DIR when set, in a temporary directory otherwise.
package conformance

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"log/slog"

	"github.com/gluebox/gluebox/appliance/registry"
)

const suite = "github.com/opencontainers/distribution-spec/conformance"

func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	bin := os.Getenv("OCI_CONFORMANCE_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "conformance")
		// go test puts its own GOROOT/bin first in PATH.
		out, err := exec.Command("go", "build", "-o", bin, suite).CombinedOutput()
		if err != nil {
			t.Fatalf("cannot build conformance suite: %v\n%s", err, out)
		}
	}

	registry.RouteDistributionLogs(slog.New(slog.DiscardHandler)) // this test binary is main
	reg, err := registry.New(registry.Config{Dir: t.TempDir(), Addr: "127.0.0.1:0", GCInterval: -1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	regReady := make(chan error, 1)
	go func() { regReady <- reg.WaitReady(ctx) }()
	select {
	case err := <-regReady:
		if err != nil {
			t.Fatalf("registry not ready: %v", err)
		}
	case err := <-done:
		t.Fatalf("registry did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("registry did not start in 30s")
	}

	results := os.Getenv("OCI_RESULTS_DIR")
	if results == "" {
		results = t.TempDir()
	}
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir() // no oci-conformance.yaml there: configuration comes from the environment
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+reg.Addr(),
		"OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results,
		"OCI_VERSION=1.1",
		"OCI_LOG=error",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	t.Logf("results in %s", results)

	counts := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^  (\w+)\.+:\s+(\d+)$`).FindAllStringSubmatch(out.String(), -1) {
		n, _ := strconv.Atoi(m[2])
		counts[m[1]] = n
	}
	t.Logf("conformance counts: %v", counts)
	if testing.Verbose() || runErr != nil {
		t.Logf("suite output:\n%s", out.String())
	}
	if counts["Total"] == 0 {
		t.Fatalf("conformance suite produced no counts (%v)", runErr)
	}
	if counts["FAIL"] > 0 || runErr != nil {
		t.Errorf("conformance: %d failed of %d (%v)", counts["FAIL"], counts["Total"], runErr)
	}
}
