// Command bench prints gluebox's performance figures on this machine (`make bench`): node boot
// times, time to a running pod, idle memory, binary size, and the component benchmarks of the
// registry, the secret store and the metrics and log stores. It needs root (it boots a real
// node in a network namespace). Lines are "name: value unit" so runs can be compared.
package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gluebox/gluebox/appliance/ociimage"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/testnode"
)

func main() {
	bin := flag.String("gluebox", "bin/gluebox", "gluebox binary to measure")
	idle := flag.Duration("idle", 60*time.Second, "how long the node idles before its memory is measured")
	only := flag.String("only", "", "run only this group: node, gitops, builds, registry, secrets, metrics, logs")
	flag.Parse()
	abs, _ := filepath.Abs(*bin)
	// Distribution logs every request through logrus; the figures are what matters here.
	registry.RouteDistributionLogs(slog.New(slog.NewTextHandler(io.Discard, nil)))
	out := os.Stdout
	host, _ := os.Hostname()
	fmt.Fprintf(out, "# gluebox bench on %s, %s\n", host, time.Now().UTC().Format(time.RFC3339))
	failed := false
	for _, g := range groups(abs, *idle) {
		if *only != "" && *only != g.name {
			continue
		}
		if err := g.run(out); err != nil {
			fmt.Fprintf(out, "%s: FAILED: %v\n", g.name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

type group struct {
	name string
	run  func(w io.Writer) error
}

func groups(bin string, idle time.Duration) []group {
	gs := []group{
		{"node", func(w io.Writer) error { return nodeBench(w, bin, idle) }},
		{"gitops", func(w io.Writer) error { return runGitOps(w, bin) }},
		{"builds", func(w io.Writer) error { return runBuilds(w, bin) }},
	}
	return append(gs, componentGroups()...)
}

func nodeBench(w io.Writer, bin string, idle time.Duration) error {
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "binary_size: %.1f MB (target <= 150)\n", float64(st.Size())/1e6)
	n, err := testnode.New(bin)
	if err != nil {
		return err
	}
	defer n.Close()

	start := time.Now()
	if err := n.Start(10 * time.Minute); err != nil {
		return fmt.Errorf("cold boot: %w\n%s", err, n.Logs(4000))
	}
	fmt.Fprintf(w, "cold_boot_to_node_ready: %.1f s (first start: bundle extraction, PKI, empty datastore)\n", time.Since(start).Seconds())

	pod := `apiVersion: v1
kind: Pod
metadata: {name: bench, namespace: default}
spec:
  containers: [{name: pause, image: ` + ociimage.PauseImage + `, imagePullPolicy: Never}]
`
	f := filepath.Join(n.Root, "pod.yaml")
	if err := os.WriteFile(f, []byte(pod), 0o644); err != nil {
		return err
	}
	start = time.Now()
	if out, err := n.Kubectl("apply", "-f", f); err != nil {
		return fmt.Errorf("apply pod: %v: %s", err, out)
	}
	if err := testnode.Eventually(3*time.Minute, func() error {
		out, err := n.Kubectl("get", "pod", "bench", "-o", "jsonpath={.status.phase}")
		if err != nil || out != "Running" {
			return fmt.Errorf("phase %q %v", out, err)
		}
		return nil
	}); err != nil {
		return err
	}
	fmt.Fprintf(w, "first_pod_running: %.1f s (apply to Running, image present)\n", time.Since(start).Seconds())

	time.Sleep(idle)
	on, err := n.Memory()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "idle_rss_after_%ds: %.0f MiB (gluebox + containerd + shims + coredns + observability; target <= 700)\n", int(idle.Seconds()), mib(on.RSS))
	fmt.Fprintf(w, "idle_rss_anon: %.0f MiB (heaps and stacks; the rest, %.0f MiB, is file-backed: program code the kernel can drop)\n", mib(on.Anon), mib(on.File))

	if err := n.Stop(2 * time.Minute); err != nil {
		return err
	}
	start = time.Now()
	if err := n.Start(5 * time.Minute); err != nil {
		return fmt.Errorf("warm boot: %w", err)
	}
	fmt.Fprintf(w, "warm_boot_to_node_ready: %.1f s (target <= 15)\n", time.Since(start).Seconds())

	// The same node without the metrics/logs/alerts stack, for its idle overhead.
	if err := n.Stop(2 * time.Minute); err != nil {
		return err
	}
	if err := n.Start(5*time.Minute, "--observability=false"); err != nil {
		return fmt.Errorf("boot without observability: %w", err)
	}
	time.Sleep(idle)
	off, err := n.Memory()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "idle_rss_observability_off: %.0f MiB (after a warm boot; observability's idle overhead: %.0f MiB)\n", mib(off.RSS), mib(on.RSS-off.RSS))
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
