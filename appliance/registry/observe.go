package registry

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// route is a parsed /v2/ request path.
type route struct {
	kind string // "base", "catalog", "manifests", "blobs", "uploads", "tags", "referrers", "" (not a registry route)
	repo string
	ref  string // tag or digest for manifests/blobs/referrers, upload id for uploads
}

// parseRoute splits a /v2/ path into its kind, repository and reference without validating the
// repository name (validRepo does that).
func parseRoute(p string) route {
	if p == "/v2" || p == "/v2/" {
		return route{kind: "base"}
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{}
	}
	if rest == "_catalog" {
		return route{kind: "catalog"}
	}
	if i := strings.LastIndex(rest, "/blobs/uploads"); i > 0 {
		if tail := rest[i+len("/blobs/uploads"):]; tail == "" || tail[0] == '/' {
			return route{kind: "uploads", repo: rest[:i], ref: strings.TrimPrefix(tail, "/")}
		}
	}
	for _, kind := range []string{"manifests", "blobs", "referrers"} {
		if i := strings.LastIndex(rest, "/"+kind+"/"); i > 0 {
			return route{kind: kind, repo: rest[:i], ref: rest[i+len(kind)+2:]}
		}
	}
	if repo, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		return route{kind: "tags", repo: repo}
	}
	return route{kind: "unknown"}
}

// validRepo reports whether name is a valid repository name (no "..", no upper case, length
// limits), the same grammar distribution enforces.
func validRepo(name string) bool {
	if name == "" || len(name) > reference.RepositoryNameTotalLengthMax {
		return false
	}
	_, err := reference.WithName(name)
	return err == nil
}

// writeOCIError writes the error body the distribution spec defines.
func writeOCIError(w http.ResponseWriter, status int, code, msg string, detail any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": code, "message": msg, "detail": detail}}})
}

// recorder captures the status and size of a response for logs and metrics.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	user   string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile fast path for blob downloads.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := io.Copy(r.ResponseWriter, src)
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// metrics are per instance, on a private Prometheus registry: Kubernetes components in the same
// process own the global default one.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytesIn  *prometheus.CounterVec
	bytesOut *prometheus.CounterVec
	gcRuns   *prometheus.CounterVec
	gcFreed  prometheus.Counter
	gcLast   prometheus.Gauge
}

func newMetrics(r *Registry) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	const ns, sub = "gluebox", "registry"
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "http_requests_total",
		Help: "Registry HTTP requests by route kind, method and status code."}, []string{"route", "method", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "http_request_duration_seconds",
		Help: "Registry HTTP request latency by route kind and method.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"route", "method"})
	m.bytesIn = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "http_request_bytes_total",
		Help: "Bytes received in registry request bodies by route kind."}, []string{"route"})
	m.bytesOut = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "http_response_bytes_total",
		Help: "Bytes sent in registry response bodies by route kind."}, []string{"route"})
	m.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gc_runs_total",
		Help: "Garbage collections by result."}, []string{"result"})
	m.gcFreed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "gc_freed_bytes_total",
		Help: "Blob bytes reclaimed by garbage collection."})
	m.gcLast = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "gc_last_success_timestamp_seconds",
		Help: "Unix time of the last successful garbage collection."})
	storageBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "storage_bytes",
		Help: "Bytes used by the registry's storage directory."}, func() float64 { return float64(r.storageBytes()) })
	m.reg.MustRegister(m.requests, m.duration, m.bytesIn, m.bytesOut, m.gcRuns, m.gcFreed, m.gcLast, storageBytes)
	return m
}

// MetricsHandler serves the registry's metrics in the Prometheus text format.
func (r *Registry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(r.metrics.reg, promhttp.HandlerOpts{})
}

// Gatherer exposes the registry's private metrics registry, for a server that merges several.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.metrics.reg }

// countingBody counts request body bytes.
type countingBody struct {
	io.ReadCloser
	n    atomic.Int64
	bufs *bufPool
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// An upload is read in uploadBufSize chunks, uploadReadAhead of them ahead of the blob writer;
// the registry keeps keptUploadBufs buffers between uploads (8 MiB, two uploads' worth). 1 MiB
// is measured best: smaller chunks mean more hash and write calls per blob, larger ones no longer
// fit the CPU's L2 cache between the network read and the hashing.
const (
	uploadBufSize   = 1 << 20
	uploadReadAhead = 3
	keptUploadBufs  = 2 * (uploadReadAhead + 1)
)

// bufPool is a bounded free list of upload buffers. Unlike a sync.Pool, which drops its contents
// at every garbage collection, it keeps them mapped: an upload that allocates its buffers afresh
// pays the first touch of every page, which on a VM that hands free memory back to its host
// costs ~4 ms per MiB.
type bufPool struct{ free chan *[]byte }

func newBufPool(n int) *bufPool { return &bufPool{free: make(chan *[]byte, n)} }

func (p *bufPool) get() *[]byte {
	select {
	case b := <-p.free:
		return b
	default:
		b := make([]byte, uploadBufSize)
		return &b
	}
}

func (p *bufPool) put(b *[]byte) {
	select {
	case p.free <- b:
	default: // enough kept: leave it to the collector
	}
}

// WriteTo lets distribution's io.Copy of an upload body hand the blob writer 1 MiB chunks
// instead of 32 KiB ones (32 times fewer write syscalls and hash calls per blob), and reads the
// next chunks from the network on another goroutine while the blob writer hashes and writes the
// current one, so receiving overlaps hashing and disk writes.
func (c *countingBody) WriteTo(w io.Writer) (int64, error) {
	type chunk struct {
		bp  *[]byte
		n   int
		err error
	}
	full := make(chan chunk, uploadReadAhead)
	free := make(chan *[]byte, uploadReadAhead+1)
	for range uploadReadAhead + 1 {
		free <- c.bufs.get()
	}
	done := make(chan struct{})
	go func() {
		defer close(full)
		for {
			var bp *[]byte
			select {
			case bp = <-free:
			case <-done:
				return
			}
			// Fill the buffer; unlike io.ReadFull this keeps a truncated body's error
			// distinct from a clean end.
			buf, n := *bp, 0
			var rerr error
			for n < len(buf) && rerr == nil {
				var m int
				m, rerr = c.Read(buf[n:])
				n += m
			}
			select {
			case full <- chunk{bp, n, rerr}:
			case <-done:
				c.bufs.put(bp)
				return
			}
			if rerr != nil {
				return
			}
		}
	}()
	// On an early return the reader stops after its current read (the server closes the body
	// when the handler returns); buffers it still holds are simply not reused.
	defer close(done)
	defer func() { // the buffers no one holds any more go back for the next upload
		for {
			select {
			case bp := <-free:
				c.bufs.put(bp)
			default:
				return
			}
		}
	}()
	var total int64
	for ch := range full {
		if ch.n > 0 {
			m, werr := w.Write((*ch.bp)[:ch.n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
			if m < ch.n {
				return total, io.ErrShortWrite
			}
		}
		if ch.err == io.EOF {
			c.bufs.put(ch.bp)
			return total, nil
		}
		if ch.err != nil {
			return total, ch.err
		}
		free <- ch.bp
	}
	return total, io.ErrUnexpectedEOF
}

// observe logs every request and records metrics.
func (r *Registry) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		body := &countingBody{ReadCloser: req.Body, bufs: r.uploadBufs}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = body
		}
		next.ServeHTTP(rec, req)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		rt := parseRoute(req.URL.Path)
		kind := rt.kind
		if kind == "" {
			kind = "other"
		}
		el := time.Since(start)
		m := r.metrics
		m.requests.WithLabelValues(kind, req.Method, strconv.Itoa(rec.status)).Inc()
		m.duration.WithLabelValues(kind, req.Method).Observe(el.Seconds())
		m.bytesIn.WithLabelValues(kind).Add(float64(body.n.Load()))
		m.bytesOut.WithLabelValues(kind).Add(float64(rec.bytes))

		level := slog.LevelInfo
		switch {
		case rec.status >= 500:
			level = slog.LevelWarn
		case kind == "base":
			level = slog.LevelDebug
		}
		r.log.Log(req.Context(), level, "request", "method", req.Method, "path", req.URL.Path,
			"status", rec.status, "in", body.n.Load(), "out", rec.bytes, "ms", el.Milliseconds(),
			"remote", req.RemoteAddr, "user", rec.user)
	})
}

// RouteDistributionLogs sends the log output of distribution's internals to logger: warnings and
// errors at their level, the rest at debug. Call it from main (or a test binary's TestMain);
// calling it again only changes where the lines go.
//
// This is process-wide state, and cannot be per registry instance: distribution logs through
// logrus' standard logger, and the only per-instance alternative, a logger in the context, is
// set with an internal package (distribution/v3/internal/dcontext) that gluebox cannot import.
// So one hook is added to the standard logger, once (each call used to add another, so every
// line was logged once per server start), and it forwards to the logger of the latest call.
func RouteDistributionLogs(logger *slog.Logger) {
	distributionLogs.log.Store(logger.With("component", "registry", "source", "distribution"))
	distributionLogs.once.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(io.Discard)
		std.SetLevel(logrus.InfoLevel)
		std.AddHook(logrusBridge{log: &distributionLogs.log})
	})
}

// distributionLogs is the state behind RouteDistributionLogs; see there why it is global.
var distributionLogs struct {
	once sync.Once
	log  atomic.Pointer[slog.Logger]
}

type logrusBridge struct{ log *atomic.Pointer[slog.Logger] }

func (logrusBridge) Levels() []logrus.Level { return logrus.AllLevels }

func (b logrusBridge) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(e.Message, "response completed"):
		// Per-request lines duplicate gluebox's own request log; a client's 404 is no error.
		if status, _ := e.Data["http.response.status"].(int); status >= 500 {
			level = slog.LevelWarn
		}
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		if strings.HasPrefix(k, "http.request.") || k == "go.version" || k == "instance.id" {
			continue
		}
		attrs = append(attrs, k, v)
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	b.log.Load().Log(ctx, level, e.Message, attrs...)
	return nil
}
