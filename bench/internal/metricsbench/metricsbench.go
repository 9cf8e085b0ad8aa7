// Package metricsbench is the metrics store's benchmark for `make bench` (group "metrics"):
// VictoriaMetrics' ingestion rate, CPU, bytes per sample and RSS as gluebox runs it. Only bench/
// imports it.
package metricsbench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/bench/internal/vbench"
)

// Benchmark shape: 50 apps × 2 environments × 50 replicas = 5000 pods, each exposing the 10
// series of benchFamilies, so 50,000 series; 4 writers each own a quarter of them and post
// 10,000-sample Prometheus text batches for 20 s, which fits the whole run in well under a
// minute on the 2-core reference VM.
const (
	benchApps     = 50
	benchEnvs     = 2
	benchReplicas = 50
	benchWriters  = 4
	benchBatch    = 10000
	benchLoad     = 20 * time.Second
	// benchInterval is the virtual scrape interval: each pass over a writer's series advances
	// its samples' timestamps by it, as a scraper would.
	benchInterval = 15 * time.Second
	// benchAnchorPerCore is VictoriaMetrics' documented ingestion rate per CPU core.
	benchAnchorPerCore = 300_000
)

// Run measures VictoriaMetrics' ingestion as gluebox runs it (New's defaults: GOMAXPROCS=1,
// 256 MiB of caches) and prints "name: value unit (comment)" lines to w: accepted samples/s
// from an in-process load generator and its ratio to the documented per-core rate, samples per
// CPU-second of VictoriaMetrics, bytes per sample on disk once flushed, and its RSS at the end.
// It works in a fresh directory under dir and removes it, and the process, afterwards. The
// victoria-metrics program is $GLUEBOX_TEST_VICTORIAMETRICS, else embed/.build/bin's (found from
// the working directory up, as `make bundle` leaves it), else the one on PATH.
func Run(w io.Writer, dir string) (err error) {
	bin, err := vbench.BenchBinary("victoria-metrics", "GLUEBOX_TEST_VICTORIAMETRICS")
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp(dir, "metrics-bench-")
	if err != nil {
		return fmt.Errorf("cannot create bench dir: %w", err)
	}
	defer os.RemoveAll(root)
	port, err := vbench.BenchFreePort()
	if err != nil {
		return err
	}
	cfg := metrics.Config{Binary: bin, Dir: filepath.Join(root, "metrics"), Port: port, LogFile: filepath.Join(root, "victoria-metrics.log")}
	m, err := metrics.New(cfg, nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	var runErr error
	go func() { runErr = m.Run(ctx); close(finished) }()
	stop := func() error { cancel(); <-finished; return runErr }
	defer func() {
		if serr := stop(); err == nil {
			err = serr
		} else if serr != nil {
			err = fmt.Errorf("%w (and: %w)", err, serr)
		}
		if err != nil {
			err = fmt.Errorf("%w; victoria-metrics log ends:\n%s", err, vbench.BenchLogTail(cfg.LogFile))
		}
	}()
	if err := vbench.BenchWaitReady(ctx, m.WaitReady, finished); err != nil {
		return fmt.Errorf("victoria-metrics is not ready: %w", err)
	}

	const accepted, cpu = `vm_rows_inserted_total{type="prometheus"}`, "process_cpu_seconds_total"
	before, err := vbench.BenchScrape(ctx, m.URL()+"/metrics", accepted, cpu)
	if err != nil {
		return err
	}
	start := time.Now()
	sent, err := benchPromLoad(ctx, m.URL()+"/api/v1/import/prometheus", start)
	if err != nil {
		return err
	}
	load := time.Since(start)
	// The import answers once its rows are parsed and queued; force_flush makes everything
	// queued searchable, and then the counter no longer moves.
	after, err := vbench.BenchSettle(ctx, m.URL(), before, accepted, cpu, float64(sent))
	if err != nil {
		return err
	}
	samples := after[accepted] - before[accepted]
	cpuSec := after[cpu] - before[cpu]
	st := m.State()
	if st.Restarts > 0 {
		return fmt.Errorf("victoria-metrics restarted %d times during the bench (last error: %s)", st.Restarts, st.LastError)
	}
	rss, peak, rssErr := vbench.BenchRSS(st.PID)

	// Stopping flushes the in-memory parts, so the data dir then holds every sample.
	if err := stop(); err != nil {
		return err
	}
	disk, err := benchDiskBreakdown(filepath.Join(cfg.DataDir(), "data"))
	if err != nil {
		return err
	}

	rate := samples / load.Seconds()
	series := benchApps * benchEnvs * benchReplicas * len(benchFamilies)
	fmt.Fprintf(w, "metrics_ingest_rate: %.0f samples/s (%d writers posting %d-sample Prometheus text batches over %d series for %.1f s; %.0f of %d sent accepted; VictoriaMetrics at gluebox's defaults: GOMAXPROCS=%d, memory.allowedBytes=%d MiB)\n",
		rate, benchWriters, benchBatch, series, load.Seconds(), samples, sent, metrics.DefaultCPUs, metrics.DefaultMemoryBytes>>20)
	fmt.Fprintf(w, "metrics_ingest_vs_anchor: %.2f ratio (to VictoriaMetrics' documented ~300K samples/s per core × the %d core gluebox allows it by default; the generator shares this %d-core machine, 1-min load average %s at the end)\n",
		rate/(benchAnchorPerCore*metrics.DefaultCPUs), metrics.DefaultCPUs, runtime.NumCPU(), vbench.BenchLoadAvg())
	if cpuSec > 0 {
		fmt.Fprintf(w, "metrics_ingest_per_cpu_second: %.0f samples/CPU-s (accepted samples / VictoriaMetrics' own CPU time during the load: %.1f s, %.2f cores on average; GOMAXPROCS bounds Go code, not syscalls)\n",
			samples/cpuSec, cpuSec, cpuSec/load.Seconds())
	}
	if samples > 0 {
		total := disk.values + disk.timestamps + disk.index
		fmt.Fprintf(w, "metrics_bytes_per_sample: %.2f bytes (parts and series index after the flush at stop, %.1f MiB, / samples: values %.2f, timestamps %.2f, indexes %.2f; anchor < 1 for real data; "+
			"synthetic data: %d samples per series, counters growing by uniformly random steps, random-walk gauges, a few constants, %s scrapes with 0-4 ms jitter: ≈%.2f bytes/sample of pure randomness)\n",
			float64(total)/samples, float64(total)/(1<<20), float64(disk.values)/samples, float64(disk.timestamps)/samples, float64(disk.index)/samples,
			int(samples)/series, benchInterval, benchEntropyBytes)
	}
	if rssErr != nil {
		fmt.Fprintf(w, "metrics_rss_end: skipped (%v)\n", rssErr)
	} else {
		fmt.Fprintf(w, "metrics_rss_end: %.0f MiB (VmRSS of victoria-metrics after the load; memory.allowedBytes bounds only its caches)\n", float64(rss)/(1<<20))
		fmt.Fprintf(w, "metrics_rss_peak: %.0f MiB (VmHWM)\n", float64(peak)/(1<<20))
	}
	return nil
}

// benchFamily is one series per pod: a metric name with extra labels and how its value moves.
type benchFamily struct {
	name, labels string
	start        float64 // the first value is random in [0, start)
	next         func(r *rand.Rand, v float64) float64
}

// benchFamilies look like what cAdvisor and an instrumented app expose. Counters keep the
// precision their exporters print (cAdvisor's CPU seconds have 6 decimals). Their steps are
// independent and uniform, so no compressor can go below benchEntropyBytes per sample.
var benchFamilies = []benchFamily{
	{"container_cpu_usage_seconds_total", "", 1e5, func(r *rand.Rand, v float64) float64 {
		return math.Round((v+r.Float64()*3)*1e6) / 1e6
	}},
	{"container_memory_working_set_bytes", "", 1 << 30, func(r *rand.Rand, v float64) float64 {
		return math.Floor(max(64<<20, v+float64((r.IntN(65)-32)*4096))/4096) * 4096
	}},
	{"container_network_receive_bytes_total", "", 1e11, func(r *rand.Rand, v float64) float64 { return v + float64(r.IntN(2<<20)) }},
	{"container_network_transmit_bytes_total", "", 1e11, func(r *rand.Rand, v float64) float64 { return v + float64(r.IntN(4<<20)) }},
	{"http_requests_total", `,method="GET",code="200"`, 1e8, func(r *rand.Rand, v float64) float64 { return v + float64(r.IntN(300)) }},
	{"http_requests_total", `,method="POST",code="201"`, 1e7, func(r *rand.Rand, v float64) float64 { return v + float64(r.IntN(40)) }},
	{"http_requests_total", `,method="GET",code="500"`, 100, func(r *rand.Rand, v float64) float64 {
		if r.IntN(50) == 0 {
			return v + 1
		}
		return v
	}},
	{"http_request_duration_seconds_sum", "", 1e6, func(r *rand.Rand, v float64) float64 {
		return math.Round((v+r.Float64()*20)*1e3) / 1e3
	}},
	{"process_open_fds", "", 200, func(r *rand.Rand, v float64) float64 { return max(8, v+float64(r.IntN(5)-2)) }},
	{"up", "", 1, func(*rand.Rand, float64) float64 { return 1 }},
}

// benchEntropyBytes is the randomness per sample of benchFamilies' steps (log2 of the number of
// equally likely steps: 21.5+6+21+22+8.2+5.3+0.1+14.3+2.3+0 bits per 10 samples) plus the
// timestamps' 0-4 ms jitter (2.3 bits), in bytes.
const benchEntropyBytes = (100.8/10 + 2.3) / 8

var benchAppNames = []string{"checkout", "cart", "catalog", "search", "payments", "orders", "shipping",
	"inventory", "users", "auth", "notifications", "recommendations", "reviews", "pricing", "images",
	"gateway", "billing", "invoices", "reports", "analytics", "emails", "sessions", "ledger", "fraud", "support"}

var benchTeams = []string{"storefront", "payments", "platform", "growth", "data"}

// benchPrefixes renders every series' "name{labels} " once.
func benchPrefixes() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	pod := 0
	for a := range benchApps {
		app := benchAppNames[a%len(benchAppNames)]
		if a >= len(benchAppNames) {
			app += "-worker"
		}
		for _, env := range []string{"prod", "staging"}[:benchEnvs] {
			ns := benchTeams[a%len(benchTeams)] + "-" + env
			rs := vbench.K8sSuffix(r, 10)
			for range benchReplicas {
				name := app + "-" + rs + "-" + vbench.K8sSuffix(r, 5)
				ip := fmt.Sprintf("10.42.%d.%d:8080", pod/250, pod%250+2)
				pod++
				for _, f := range benchFamilies {
					out = append(out, fmt.Appendf(nil, `%s{namespace=%q,app=%q,env=%q,pod=%q,container=%q,instance=%q,job="kubernetes-pods"%s} `,
						f.name, ns, app, env, name, app, ip, f.labels))
				}
			}
		}
	}
	return out
}

// promWriter generates the samples of series [lo, hi): one pass over them per virtual scrape.
type promWriter struct {
	prefixes [][]byte
	lo, hi   int
	values   []float64
	r        *rand.Rand
	pos      int
	scrape   int64 // virtual scrape time, unix ms
}

func newPromWriter(prefixes [][]byte, lo, hi int, seed uint64, start int64) *promWriter {
	p := &promWriter{prefixes: prefixes, lo: lo, hi: hi, values: make([]float64, hi-lo), r: rand.New(rand.NewPCG(seed, 7)), scrape: start}
	for i := range p.values {
		p.values[i] = math.Floor(p.r.Float64() * benchFamilies[(lo+i)%len(benchFamilies)].start)
	}
	return p
}

// batch appends n samples in Prometheus text format to buf.
func (p *promWriter) batch(buf []byte, n int) []byte {
	for range n {
		s := p.lo + p.pos
		v := benchFamilies[s%len(benchFamilies)].next(p.r, p.values[p.pos])
		p.values[p.pos] = v
		// Scrapers spread their targets over the interval and are a few ms late.
		ts := p.scrape + int64(s/len(benchFamilies)*7%int(benchInterval.Milliseconds())) + int64(p.r.IntN(5))
		buf = append(buf, p.prefixes[s]...)
		buf = strconv.AppendFloat(buf, v, 'g', -1, 64)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, ts, 10)
		buf = append(buf, '\n')
		if p.pos++; p.lo+p.pos == p.hi {
			p.pos = 0
			p.scrape += benchInterval.Milliseconds()
		}
	}
	return buf
}

// benchPromLoad runs benchWriters writers against url for benchLoad from start and returns how
// many samples they got accepted (2xx answers).
func benchPromLoad(ctx context.Context, url string, start time.Time) (int64, error) {
	prefixes := benchPrefixes()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: benchWriters}}
	defer client.CloseIdleConnections()
	// Virtual scrapes start 12 hours back so they stay in the past however fast the store is.
	first := start.Add(-12 * time.Hour).Truncate(benchInterval).UnixMilli()
	var sent atomic.Int64
	var wg sync.WaitGroup
	per := len(prefixes) / benchWriters
	for i := range benchWriters {
		lo, hi := i*per, (i+1)*per
		if i == benchWriters-1 {
			hi = len(prefixes)
		}
		g := newPromWriter(prefixes, lo, hi, uint64(i), first)
		wg.Go(func() {
			var buf []byte
			for time.Since(start) < benchLoad && ctx.Err() == nil {
				buf = g.batch(buf[:0], benchBatch)
				if err := vbench.BenchPost(ctx, client, url, "text/plain", buf); err != nil {
					cancel(err)
					return
				}
				sent.Add(benchBatch)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return 0, fmt.Errorf("cannot import samples: %w", err)
	}
	return sent.Load(), nil
}

// The helpers below are the same in bench/internal/logsbench.

// benchDisk is where VictoriaMetrics' bytes go, from its parts' file names.
type benchDisk struct{ values, timestamps, index int64 }

// benchDiskBreakdown adds up the files under dir (VictoriaMetrics' <storageDataPath>/data, which
// holds the small and big parts and the per-partition series index, and not the caches): the
// samples' values.bin and timestamps.bin, and everything else as index.
func benchDiskBreakdown(dir string) (benchDisk, error) {
	var d benchDisk
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case e.Name() == "values.bin" && !strings.Contains(path, "/indexdb/"):
			d.values += info.Size()
		case e.Name() == "timestamps.bin":
			d.timestamps += info.Size()
		default:
			d.index += info.Size()
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("cannot measure %s: %w", dir, err)
	}
	return d, nil
}
