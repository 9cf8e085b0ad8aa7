// Package logsbench is the log store's benchmark for `make bench` (group "logs"): VictoriaLogs'
// ingestion as gluebox runs it. Only bench/ imports it.
package logsbench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/bench/internal/vbench"
)

// Benchmark shape: 50 apps × 2 environments × 5 replicas = 500 pods, one stream each; 4 writers
// post 5000-line JSON-lines batches for 20 s, which fits the whole run in well under a minute on
// the 2-core reference VM.
const (
	benchApps     = 50
	benchEnvs     = 2
	benchReplicas = 5
	benchWriters  = 4
	benchBatch    = 5000
	benchLoad     = 20 * time.Second
	// benchStreamFields are the fields vlagent's Kubernetes collector makes a line's stream of.
	benchStreamFields = "kubernetes.pod_namespace,kubernetes.pod_name,kubernetes.container_name"
)

// Run measures VictoriaLogs' ingestion as gluebox runs it (New's defaults: GOMAXPROCS=1,
// 256 MiB of caches) and prints "name: value unit (comment)" lines to w: accepted lines/s from
// an in-process load generator, lines per CPU-second of VictoriaLogs, bytes per line on disk
// once flushed and the compression against the JSON sent, and its RSS at the end. It works in a
// fresh directory under dir and removes it, and the process, afterwards. The victoria-logs
// program is $GLUEBOX_TEST_VICTORIALOGS, else embed/.build/bin's (found from the working
// directory up, as `make bundle` leaves it), else the one on PATH.
func Run(w io.Writer, dir string) (err error) {
	bin, err := vbench.BenchBinary("victoria-logs", "GLUEBOX_TEST_VICTORIALOGS")
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp(dir, "logs-bench-")
	if err != nil {
		return fmt.Errorf("cannot create bench dir: %w", err)
	}
	defer os.RemoveAll(root)
	port, err := vbench.BenchFreePort()
	if err != nil {
		return err
	}
	cfg := logs.Config{Binary: bin, Dir: filepath.Join(root, "logs"), Port: port, LogFile: filepath.Join(root, "victoria-logs.log")}
	l, err := logs.New(cfg, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var runErr error
	go func() { runErr = l.Run(ctx); close(finished) }()
	stop := func() error { cancel(); <-finished; return runErr }
	defer func() {
		if serr := stop(); err == nil {
			err = serr
		} else if serr != nil {
			err = fmt.Errorf("%w (and: %w)", err, serr)
		}
		if err != nil {
			err = fmt.Errorf("%w; victoria-logs log ends:\n%s", err, vbench.BenchLogTail(cfg.LogFile))
		}
	}()
	if err := vbench.BenchWaitReady(ctx, l.WaitReady, finished); err != nil {
		return fmt.Errorf("victoria-logs is not ready: %w", err)
	}

	const accepted, cpu = `vl_rows_ingested_total{type="jsonline"}`, "process_cpu_seconds_total"
	before, err := vbench.BenchScrape(ctx, l.URL()+"/metrics", accepted, cpu)
	if err != nil {
		return err
	}
	q := url.Values{"_stream_fields": {benchStreamFields}}
	start := time.Now()
	sent, raw, err := benchJSONLoad(ctx, l.URL()+"/insert/jsonline?"+q.Encode(), start)
	if err != nil {
		return err
	}
	load := time.Since(start)
	after, err := vbench.BenchSettle(ctx, l.URL(), before, accepted, cpu, float64(sent))
	if err != nil {
		return err
	}
	lines := after[accepted] - before[accepted]
	cpuSec := after[cpu] - before[cpu]
	st := l.State()
	if st.Restarts > 0 {
		return fmt.Errorf("victoria-logs restarted %d times during the bench (last error: %s)", st.Restarts, st.LastError)
	}
	rss, peak, rssErr := vbench.BenchRSS(st.PID)

	// Stopping flushes the in-memory parts, so the data dir then holds every line.
	if err := stop(); err != nil {
		return err
	}
	size, err := l.DiskUsage()
	if err != nil {
		return err
	}

	pods := benchApps * benchEnvs * benchReplicas
	fmt.Fprintf(w, "logs_ingest_rate: %.0f lines/s (%d writers posting %d-line JSON-lines batches from %d pods (streams) for %.1f s; %.0f of %d sent accepted; VictoriaLogs at gluebox's defaults: GOMAXPROCS=%d, memory.allowedBytes=%d MiB, on a %d-core machine shared with the generator, 1-min load average %s at the end)\n",
		lines/load.Seconds(), benchWriters, benchBatch, pods, load.Seconds(), lines, sent, logs.DefaultCPUs, logs.DefaultMemoryBytes>>20, runtime.NumCPU(), vbench.BenchLoadAvg())
	fmt.Fprintf(w, "logs_ingest_raw: %.1f MB/s (JSON sent)\n", float64(raw)/1e6/load.Seconds())
	if cpuSec > 0 {
		fmt.Fprintf(w, "logs_ingest_per_cpu_second: %.0f lines/CPU-s (accepted lines / VictoriaLogs' own CPU time during the load: %.1f s, %.2f cores on average; GOMAXPROCS bounds Go code, not syscalls)\n",
			lines/cpuSec, cpuSec, cpuSec/load.Seconds())
	}
	if lines > 0 && size > 0 {
		fmt.Fprintf(w, "logs_bytes_per_line: %.1f bytes (data dir after the flush at stop, %.1f MiB, / lines; lines average %.0f bytes of JSON with ~115-byte messages from 5 templates (access log, batch job, cache stats, slow query, error) filled with random ids, durations and sizes; after 20 s of ingestion)\n",
			float64(size)/lines, float64(size)/(1<<20), float64(raw)/float64(sent))
		fmt.Fprintf(w, "logs_compression: %.1f ratio (JSON sent / bytes on disk)\n", float64(raw)/float64(size))
	}
	if rssErr != nil {
		fmt.Fprintf(w, "logs_rss_end: skipped (%v)\n", rssErr)
	} else {
		fmt.Fprintf(w, "logs_rss_end: %.0f MiB (VmRSS of victoria-logs after the load; memory.allowedBytes bounds only its caches)\n", float64(rss)/(1<<20))
		fmt.Fprintf(w, "logs_rss_peak: %.0f MiB (VmHWM)\n", float64(peak)/(1<<20))
	}
	return nil
}

var benchAppNames = []string{"checkout", "cart", "catalog", "search", "payments", "orders", "shipping",
	"inventory", "users", "auth", "notifications", "recommendations", "reviews", "pricing", "images",
	"gateway", "billing", "invoices", "reports", "analytics", "emails", "sessions", "ledger", "fraud", "support"}

var benchTeams = []string{"storefront", "payments", "platform", "growth", "data"}

// benchPodFields renders every pod's fields once, as the tail of a JSON object.
func benchPodFields() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	for a := range benchApps {
		app := benchAppNames[a%len(benchAppNames)]
		if a >= len(benchAppNames) {
			app += "-worker"
		}
		for _, env := range []string{"prod", "staging"}[:benchEnvs] {
			ns := benchTeams[a%len(benchTeams)] + "-" + env
			rs := vbench.K8sSuffix(r, 10)
			for range benchReplicas {
				out = append(out, fmt.Appendf(nil, `"kubernetes.pod_namespace":%q,"kubernetes.pod_name":%q,"kubernetes.container_name":%q,"app":%q,"env":%q}`+"\n",
					ns, app+"-"+rs+"-"+vbench.K8sSuffix(r, 5), app, app, env))
			}
		}
	}
	return out
}

var (
	benchPaths     = []string{"/api/v1/orders", "/api/v1/cart/items", "/api/v1/products", "/api/v1/users", "/api/v1/search", "/api/v1/payments"}
	benchStatus    = []int{200, 200, 200, 200, 200, 200, 201, 204, 304, 404, 500}
	benchUpstreams = []string{"https://psp.example.com/v2/charges", "http://inventory.storefront-prod:8080/reserve", "redis://sessions:6379", "postgres://orders-db:5432/orders"}
)

// benchMessage appends one log message of about 120 bytes and returns it with its level.
func benchMessage(buf []byte, r *rand.Rand) ([]byte, string) {
	switch n := r.IntN(100); {
	case n < 60:
		method := "GET"
		if r.IntN(4) == 0 {
			method = "POST"
		}
		return fmt.Appendf(buf, `%s %s/%d %d %.1fms bytes=%d client=10.42.%d.%d ua="Go-http-client/1.1" trace_id=%016x`,
			method, benchPaths[r.IntN(len(benchPaths))], r.IntN(100000), benchStatus[r.IntN(len(benchStatus))],
			r.ExpFloat64()*20, r.IntN(20000), r.IntN(20), r.IntN(250), r.Uint64()), "info"
	case n < 75:
		return fmt.Appendf(buf, "processed batch batch=%d items=%d duration=%dms queue=orders-events lag=%d partition=%d offset=%d",
			r.IntN(1000000), r.IntN(500), r.IntN(2000), r.IntN(100), r.IntN(12), r.Int64N(1<<40)), "info"
	case n < 85:
		return fmt.Appendf(buf, "cache stats hits=%d misses=%d ratio=%.3f evicted=%d heap_inuse=%dMiB goroutines=%d gc_pause=%.2fms",
			r.IntN(100000), r.IntN(10000), r.Float64(), r.IntN(5000), 50+r.IntN(400), 20+r.IntN(400), r.Float64()*5), "debug"
	case n < 95:
		return fmt.Appendf(buf, "slow query took %dms: SELECT id, status, total FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT %d",
			200+r.IntN(5000), 10*(1+r.IntN(10))), "warn"
	default:
		return fmt.Appendf(buf, "failed to call %s: context deadline exceeded after %dms (attempt %d/3) request_id=%08x",
			benchUpstreams[r.IntN(len(benchUpstreams))], 1000*(1+r.IntN(5)), 1+r.IntN(3), r.Uint32()), "error"
	}
}

// appendJSONString appends s as a JSON string; the generator's messages are printable ASCII, so
// only quotes and backslashes need escaping.
func appendJSONString(buf, s []byte) []byte {
	buf = append(buf, '"')
	for _, c := range s {
		if c == '"' || c == '\\' {
			buf = append(buf, '\\')
		}
		buf = append(buf, c)
	}
	return append(buf, '"')
}

// benchJSONLoad runs benchWriters writers against url for benchLoad from start and returns how
// many lines, and bytes of JSON, they got accepted (2xx answers).
func benchJSONLoad(ctx context.Context, url string, start time.Time) (lines, raw int64, err error) {
	pods := benchPodFields()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: benchWriters}}
	defer client.CloseIdleConnections()
	var sentLines, sentBytes atomic.Int64
	var wg sync.WaitGroup
	for i := range benchWriters {
		r := rand.New(rand.NewPCG(uint64(i), 11))
		wg.Go(func() {
			var buf, msg []byte
			for time.Since(start) < benchLoad && ctx.Err() == nil {
				buf = buf[:0]
				now := time.Now().UTC()
				for j := range benchBatch {
					var level string
					msg, level = benchMessage(msg[:0], r)
					buf = append(buf, `{"_time":"`...)
					buf = now.Add(time.Duration(j)*time.Microsecond).AppendFormat(buf, time.RFC3339Nano)
					buf = append(buf, `","_msg":`...)
					buf = appendJSONString(buf, msg)
					buf = append(buf, `,"level":"`...)
					buf = append(buf, level...)
					buf = append(buf, `",`...)
					buf = append(buf, pods[r.IntN(len(pods))]...)
				}
				if err := vbench.BenchPost(ctx, client, url, "application/stream+json", buf); err != nil {
					cancel(err)
					return
				}
				sentLines.Add(benchBatch)
				sentBytes.Add(int64(len(buf)))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, 0, fmt.Errorf("cannot ingest lines: %w", err)
	}
	return sentLines.Load(), sentBytes.Load(), nil
}

// The helpers below are the same in bench/internal/metricsbench.
