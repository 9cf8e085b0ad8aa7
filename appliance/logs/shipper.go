package logs

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultShipperBuffer is how many records a Shipper holds while the store is not reachable.
const DefaultShipperBuffer = 20000

// Shipper is a slog.Handler that passes every record to another handler and also sends it to
// the logs store, so gluebox's own log lines (and build logs written through it) can be
// queried like any container's: `gluebox logs --query 'source:=gluebox'`. Records wait in a
// bounded buffer until Run ships them (in batches, once a second); when the buffer is full the
// oldest waiting records are dropped and counted, never blocking the caller.
//
// Lifecycle: NewShipper, use as a handler at once (records are buffered), Run with the store's
// client once it is up; Run returns nil when its context ends, after a last flush.
type Shipper struct {
	next  slog.Handler
	attrs []slog.Attr
	group string
	q     *shipQueue
}

type shipQueue struct {
	mu      sync.Mutex
	lines   []Line
	max     int
	dropped atomic.Int64
}

var _ slog.Handler = (*Shipper)(nil)

// NewShipper returns a Shipper in front of next holding at most buffer records (0 means
// DefaultShipperBuffer).
func NewShipper(next slog.Handler, buffer int) *Shipper {
	if buffer <= 0 {
		buffer = DefaultShipperBuffer
	}
	return &Shipper{next: next, q: &shipQueue{max: buffer}}
}

// Enabled reports whether the next handler wants l; records of level Info and above are always
// shipped.
func (s *Shipper) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || s.next.Enabled(ctx, l)
}

// Handle passes r on (when the next handler wants it) and queues it for the store.
func (s *Shipper) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if s.next.Enabled(ctx, r.Level) {
		err = s.next.Handle(ctx, r)
	}
	fields := map[string]string{"source": "gluebox", "level": r.Level.String()}
	add := func(a slog.Attr) bool {
		key := a.Key
		if s.group != "" {
			key = s.group + "." + key
		}
		if key != "" {
			fields[key] = a.Value.Resolve().String()
		}
		return true
	}
	for _, a := range s.attrs {
		add(a)
	}
	r.Attrs(add)
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	s.q.push(Line{Time: t, Msg: r.Message, Fields: fields})
	return err
}

// WithAttrs returns a Shipper whose records carry attrs.
func (s *Shipper) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *s
	c.next = s.next.WithAttrs(attrs)
	c.attrs = append(append([]slog.Attr{}, s.attrs...), attrs...)
	return &c
}

// WithGroup returns a Shipper that prefixes later attribute keys with name.
func (s *Shipper) WithGroup(name string) slog.Handler {
	c := *s
	c.next = s.next.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}

// Dropped is how many records were dropped because the buffer was full.
func (s *Shipper) Dropped() int64 { return s.q.dropped.Load() }

func (q *shipQueue) push(l Line) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.lines) >= q.max {
		q.lines = q.lines[1:]
		q.dropped.Add(1)
	}
	q.lines = append(q.lines, l)
}

func (q *shipQueue) take(n int) []Line {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n > len(q.lines) {
		n = len(q.lines)
	}
	out := append([]Line(nil), q.lines[:n]...)
	q.lines = q.lines[n:]
	return out
}

// putBack returns a batch the store refused to the front of the queue (as room allows).
func (q *shipQueue) putBack(b []Line) {
	q.mu.Lock()
	defer q.mu.Unlock()
	room := q.max - len(q.lines)
	if room < len(b) {
		q.dropped.Add(int64(len(b) - room))
		b = b[len(b)-max(room, 0):]
	}
	q.lines = append(b, q.lines...)
}

// Run ships queued records to c every interval (0 means 1s) until ctx ends.
func (s *Shipper) Run(ctx context.Context, c *Client, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	flush := func(ctx context.Context) {
		for {
			b := s.q.take(5000)
			if len(b) == 0 {
				return
			}
			if err := c.Ingest(ctx, b, "source", "component"); err != nil {
				s.q.putBack(b)
				return
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			flush(fctx)
			cancel()
			return nil
		case <-t.C:
			flush(ctx)
		}
	}
}
