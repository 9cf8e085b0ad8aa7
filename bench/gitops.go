package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/testnode"
)

// benchT lets gittest servers run outside `go test`: Fatalf panics with a benchFailure that
// runGitOps turns into the group's error; Cleanup functions run when the group ends.
type benchT struct{ cleanups []func() }

type benchFailure struct{ msg string }

func (t *benchT) Helper() {}
func (t *benchT) Fatalf(format string, args ...any) {
	panic(benchFailure{fmt.Sprintf(format, args...)})
}
func (t *benchT) Skip(args ...any) { panic(benchFailure{fmt.Sprint(args...)}) }
func (t *benchT) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *benchT) TempDir() string {
	d, err := os.MkdirTemp("/var/tmp", "gluebox-bench-git-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func (t *benchT) close() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// withBenchT runs f with a benchT, turning its Fatalf into f's error and running its
// cleanups when f returns.
func withBenchT(f func(t *benchT) error) (err error) {
	t := &benchT{}
	defer t.close()
	defer func() {
		if r := recover(); r != nil {
			bf, ok := r.(benchFailure)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", bf.msg)
		}
	}()
	return f(t)
}

// frontDoorServes polls the node's front door until host answers path with want.
func frontDoorServes(client *http.Client, host, path, want string, timeout time.Duration) error {
	return testnode.Eventually(timeout, func() error {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:18080"+path, nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if strings.TrimSpace(string(b)) != want {
			return fmt.Errorf("got %q", b)
		}
		return nil
	})
}

func runGitOps(w io.Writer, bin string) error {
	return withBenchT(func(t *benchT) error {
		if err := pollCost(w, t); err != nil {
			return err
		}
		return commitToServing(w, t, bin)
	})
}

// pollCost measures the CPU that checking 50 unchanged repositories every 15 s for a minute
// costs gluebox (the ls-remote style ref listing; no fetch happens when nothing changed).
func pollCost(w io.Writer, t *benchT) error {
	const repos, interval, period = 50, 15 * time.Second, time.Minute
	var srcs []*source.Source
	for i := 0; i < repos; i++ {
		g := gittest.NewServer(t)
		g.Commit(map[string]string{"README": fmt.Sprint(i)}, "init")
		s, err := source.New(source.Config{URL: g.URL(), Branch: "main"})
		if err != nil {
			return err
		}
		srcs = append(srcs, s)
	}
	ctx := context.Background()
	before := cpuTime(syscall.RUSAGE_SELF)
	serverBefore := cpuTime(syscall.RUSAGE_CHILDREN)
	checks := 0
	start := time.Now()
	for time.Since(start) < period {
		round := time.Now()
		for _, s := range srcs {
			if _, err := s.Head(ctx); err != nil {
				return err
			}
			checks++
		}
		time.Sleep(time.Until(round.Add(interval)))
	}
	cpu := cpuTime(syscall.RUSAGE_SELF) - before
	server := cpuTime(syscall.RUSAGE_CHILDREN) - serverBefore
	fmt.Fprintf(w, "gitops_poll_%d_repos_cpu: %.2f s CPU per minute (%.1f ms per check, %d checks every %s; git server side %.2f s)\n",
		repos, cpu.Seconds()*float64(time.Minute)/float64(time.Since(start)), float64(cpu.Milliseconds())/float64(checks), checks, interval, server.Seconds())
	return nil
}

func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// commitToServing boots a node that follows a repository on a Git server inside its
// namespace and times a values change (a new greeting) from `git push` to the new pod
// answering through the front door: once announced by webhook, once found by polling.
func commitToServing(w io.Writer, t *benchT, bin string) error {
	n, err := testnode.New(bin)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Start(10*time.Minute, "--poll-interval", "15s"); err != nil {
		return fmt.Errorf("boot: %w\n%s", err, n.Logs(4000))
	}
	if err := n.PushImage(".", "testdata/images/hello", "127.0.0.1:5000/bench/hello:1"); err != nil {
		return err
	}
	l, err := n.Listen(testnode.NodeIP + ":0")
	if err != nil {
		return err
	}
	g := gittest.NewServerWith(t, gittest.Options{Listener: l})
	values := func(greeting string) map[string]string {
		return map[string]string{"apps/hello/envs/prod/values.yaml": fmt.Sprintf(`image: {registry: registry.gluebox.local, repository: bench/hello, tag: "1", port: 8080}
deployment:
  enabled: true
  envVariables: [{name: GREETING, value: %q}]
  readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
service: {enabled: true}
ingress: {enabled: true}
`, greeting)}
	}
	last := g.Commit(values("v0"), "v0")
	if out, err := n.Gluebox("repo", "set-config", g.URL()); err != nil {
		return fmt.Errorf("repo set-config: %v: %s", err, out)
	}
	client := n.HTTPClient()
	serving := func(want string, timeout time.Duration) error {
		return frontDoorServes(client, "hello-prod.gluebox.local", "/env?name=GREETING", want, timeout)
	}
	start := time.Now()
	if err := serving("v0", 5*time.Minute); err != nil {
		return fmt.Errorf("first deploy: %w\n%s", err, n.Logs(4000))
	}
	fmt.Fprintf(w, "gitops_first_deploy_to_serving: %.1f s (repo set-config to the app answering through the front door)\n", time.Since(start).Seconds())

	secret, err := n.Gluebox("secret", "get", "secret/gluebox/webhook", "secret")
	if err != nil {
		return fmt.Errorf("webhook secret: %v: %s", err, secret)
	}
	var hook []float64
	for i := 1; i <= 3; i++ {
		greeting := fmt.Sprintf("hook-%d", i)
		start := time.Now()
		sha := g.Commit(values(greeting), greeting)
		if err := deliverPush(client, strings.TrimSpace(secret), g.URL(), last, sha); err != nil {
			return err
		}
		last = sha
		if err := serving(greeting, 2*time.Minute); err != nil {
			return err
		}
		hook = append(hook, time.Since(start).Seconds())
	}
	sort.Float64s(hook)
	fmt.Fprintf(w, "gitops_commit_to_serving_webhook: %.1f s median of %d (min %.1f, max %.1f; target <= 10)\n", hook[1], len(hook), hook[0], hook[2])

	start = time.Now()
	g.Commit(values("polled"), "polled")
	if err := serving("polled", 3*time.Minute); err != nil {
		return err
	}
	fmt.Fprintf(w, "gitops_commit_to_serving_poll: %.1f s (poll interval 15 s, no webhook)\n", time.Since(start).Seconds())
	return nil
}

func deliverPush(c *http.Client, secret, repoURL, before, after string) error {
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "before": before, "after": after,
		"repository": map[string]string{"clone_url": repoURL},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, _ := http.NewRequest("POST", "http://127.0.0.1:18080/.gluebox/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", after)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook: status %s", resp.Status)
	}
	return nil
}
