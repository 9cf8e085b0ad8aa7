// Package vbench holds the helpers of the VictoriaMetrics and VictoriaLogs benchmarks
// (bench/internal/metricsbench and logsbench): posting load, reading the stores' counters, finding
// the programs. Only bench/ imports it.
package vbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// BenchPost posts body to url and wants a 2xx answer.
func BenchPost(ctx context.Context, client *http.Client, url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, reply(resp.Body))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// BenchSettle forces a flush on the store at base and then reads its /metrics until the
// counter key has grown by want since before, or has stopped moving for a second (10 s at most).
func BenchSettle(ctx context.Context, base string, before map[string]float64, key, other string, want float64) (map[string]float64, error) {
	if err := BenchPost(ctx, http.DefaultClient, base+"/internal/force_flush", "text/plain", nil); err != nil {
		return nil, fmt.Errorf("cannot flush: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	last := -1.0
	for {
		after, err := BenchScrape(ctx, base+"/metrics", key, other)
		if err != nil {
			return nil, err
		}
		got, ok := after[key]
		got -= before[key]
		if ok && (got >= want || got == last) {
			return after, nil
		}
		if time.Now().After(deadline) {
			if !ok {
				return nil, fmt.Errorf("%s/metrics has no %s", base, key)
			}
			return after, nil
		}
		last = got
		time.Sleep(time.Second)
	}
}

// BenchScrape reads the values of the given series (name with labels, exactly as exposed) from
// a Prometheus text endpoint; a series it does not expose yet is left out of the map.
func BenchScrape(ctx context.Context, url string, keys ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", url, err)
	}
	defer resp.Body.Close()
	out := make(map[string]float64, len(keys))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		for _, want := range keys {
			if k == want {
				f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", url, k, err)
				}
				out[k] = f
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", url, err)
	}
	return out, nil
}

// BenchRSS returns VmRSS and VmHWM of process pid in bytes.
func BenchRSS(pid int) (rss, peak int64, err error) {
	if pid == 0 {
		return 0, 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return rss, peak, nil
}

// BenchWaitReady waits for ready, or until finished (the component's Run gave up), 30 s at most.
func BenchWaitReady(ctx context.Context, ready func(context.Context) error, finished <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- ready(ctx) }()
	select {
	case err := <-res:
		return err
	case <-finished:
		cancel()
		<-res
		return errors.New("it stopped")
	}
}

// BenchBinary finds the bundled program name: the file $env names, else
// <repo>/embed/.build/bin/<name> for the first directory up from the working one that has it,
// else name on PATH.
func BenchBinary(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, p, err)
		}
		return p, nil
	}
	if dir, err := os.Getwd(); err == nil {
		for {
			p := filepath.Join(dir, "embed", ".build", "bin", name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("cannot find %s: run `make bundle` or set %s", name, env)
}

// BenchFreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func BenchFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// BenchLogTail returns the last 1500 bytes of the child's log file.
func BenchLogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}

// BenchLoadAvg returns the machine's 1-minute load average, or "?".
func BenchLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func K8sSuffix(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = k8sAlphabet[r.IntN(len(k8sAlphabet))]
	}
	return string(b)
}

// k8sAlphabet is what Kubernetes draws generated name suffixes from.
const k8sAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// reply is the start of an error answer's body, for an error message.
func reply(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
