package imagebuild

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Status is where a build is in its life.
type Status string

// The statuses of a build. Succeeded, failed and cancelled are final.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Final reports whether s is a final status.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Spec is what a caller asks the queue to build. App and Branch form the key: a newer Spec for
// the same key replaces an older one that is still queued, and builds of one key run one at a
// time, in order.
type Spec struct {
	// App names the application (and usually the image repository). Required.
	App string
	// Branch is the branch (or "pr-7" for a pull request) being built; may be empty.
	Branch string
	// Commit is the commit being built, for the record only.
	Commit string
	// Request is the build itself: context dir, Dockerfile, args, refs.
	Request
	// CancelRunning also cancels a running build of the same key. False means a running build
	// finishes and this one waits for it.
	CancelRunning bool
	// Prepare, when set, runs when the build starts (not when it is queued), inside the build's
	// time and log: it typically checks out the commit and returns the context directory, which
	// replaces Request.ContextDir. Its error fails the build. It is not persisted: builds
	// queued when gluebox stops are cancelled anyway.
	Prepare func(ctx context.Context, log io.Writer) (contextDir string, err error)
}

// Record is one build as `gluebox build list` shows it. Records persist across restarts.
type Record struct {
	ID         string    `json:"id"`
	App        string    `json:"app"`
	Branch     string    `json:"branch,omitempty"`
	Commit     string    `json:"commit,omitempty"`
	Dockerfile string    `json:"dockerfile,omitempty"`
	Refs       []string  `json:"refs"`
	Status     Status    `json:"status"`
	Digest     string    `json:"digest,omitempty"`
	Error      string    `json:"error,omitempty"`
	Queued     time.Time `json:"queued"`
	Started    time.Time `json:"started,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	// DurationMS is how long the build ran (0 until it finished; 0 if it never started).
	DurationMS int64 `json:"durationMs,omitempty"`
	// SupersededBy is the build that replaced this one while it was queued (or running, when
	// that build asked to cancel it).
	SupersededBy string `json:"supersededBy,omitempty"`
}

// Duration is how long the build ran, so far if it is running.
func (r Record) Duration() time.Duration {
	switch {
	case r.Started.IsZero():
		return 0
	case r.Finished.IsZero():
		return time.Since(r.Started)
	}
	return r.Finished.Sub(r.Started)
}

// BuildFunc runs one build, writing its log to log; Builder.Build is one.
type BuildFunc func(ctx context.Context, req Request, log io.Writer) (Result, error)

// Defaults for the zero values of QueueConfig.
const (
	DefaultConcurrency = 1
	DefaultMaxRecords  = 500
)

// QueueConfig configures a Queue.
type QueueConfig struct {
	// Dir holds builds.json (the records) and logs/<id>.log. Normally <data-dir>/state/builds.
	// Required.
	Dir string
	// Concurrency is how many builds run at once. Zero means 1.
	Concurrency int
	// MaxRecords is how many records (and logs) are kept; the oldest finished ones go first.
	// Zero means 500.
	MaxRecords int
}

// QueueOption adds a runtime dependency to NewQueue.
type QueueOption func(*Queue)

// WithOnFinish calls f with the record of every build that reaches a final status (from its
// own goroutine; f must not block for long). See Queue.OnFinish.
func WithOnFinish(f func(Record)) QueueOption {
	return func(q *Queue) { q.onFinish = append(q.onFinish, f) }
}

// OnFinish adds f to the functions called with the record of every build that reaches a final
// status, each from its own goroutine (f must not block for long). Consumers of the queue
// subscribe in their constructors, before Run.
func (q *Queue) OnFinish(f func(Record)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.onFinish = append(q.onFinish, f)
}

// Errors of Queue methods.
var (
	ErrNotFound = errors.New("no such build")
	ErrFinished = errors.New("build already finished")
)

// Causes of a cancelled build context.
var (
	errCancelRequested = errors.New("cancelled on request")
	errShutdown        = errors.New("interrupted by shutdown")
)

// Queue runs builds. Use NewQueue, then Run; Submit, Cancel, Get, List, Logs and Wait may be
// called at any time, also before Run.
type Queue struct {
	cfg   QueueConfig
	build BuildFunc
	log   *slog.Logger
	kick  chan struct{}

	mu       sync.Mutex
	onFinish []func(Record)
	nextID   int64
	records  []*Record       // oldest first
	jobs     map[string]*job // queued and running builds
	running  map[string]*job // by key
	wg       sync.WaitGroup
}

type job struct {
	rec     *Record
	req     Request
	prepare func(ctx context.Context, log io.Writer) (string, error)
	key     string
	cancel  context.CancelCauseFunc // set while running
	done    chan struct{}           // closed once rec is final
	notify  notifier                // signalled on log writes and when done
	// supersededBy is set when a newer build cancels this running one.
	supersededBy string
}

var _ supervise.Component = (*Queue)(nil)

// NewQueue loads the records in cfg.Dir. Builds that were queued or running when the previous
// process ended are final now: running ones failed ("interrupted by restart"), queued ones are
// cancelled.
func NewQueue(cfg QueueConfig, build BuildFunc, log *slog.Logger, opts ...QueueOption) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("build: QueueConfig.Dir is required")
	}
	if build == nil {
		return nil, errors.New("build: NewQueue needs a BuildFunc")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = DefaultMaxRecords
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "logs"), 0o750); err != nil {
		return nil, fmt.Errorf("build: cannot create %s: %w", cfg.Dir, err)
	}
	q := &Queue{cfg: cfg, build: build, log: log.With("component", "builds"), kick: make(chan struct{}, 1),
		jobs: map[string]*job{}, running: map[string]*job{}, nextID: 1}
	for _, o := range opts {
		o(q)
	}
	if err := q.load(); err != nil {
		return nil, err
	}
	return q, nil
}

type queueFile struct {
	NextID int64     `json:"nextId"`
	Builds []*Record `json:"builds"`
}

func (q *Queue) file() string { return filepath.Join(q.cfg.Dir, "builds.json") }

// LogPath is the log file of build id.
func (q *Queue) LogPath(id string) string { return filepath.Join(q.cfg.Dir, "logs", id+".log") }

func (q *Queue) load() error {
	b, err := os.ReadFile(q.file())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("build: cannot read %s: %w", q.file(), err)
	}
	var f queueFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("build: cannot parse %s (move it away to start with no build history): %w", q.file(), err)
	}
	q.nextID = max(f.NextID, 1)
	now := time.Now()
	changed := false
	for _, r := range f.Builds {
		if r == nil {
			continue
		}
		switch r.Status {
		case StatusRunning:
			r.Status, r.Error, r.Finished = StatusFailed, "interrupted by restart", now
			r.DurationMS = now.Sub(r.Started).Milliseconds()
			changed = true
		case StatusQueued:
			r.Status, r.Error, r.Finished = StatusCancelled, "interrupted by restart before it started", now
			changed = true
		}
		if id, err := strconv.ParseInt(r.ID, 10, 64); err == nil && id >= q.nextID {
			q.nextID = id + 1
		}
		q.records = append(q.records, r)
	}
	if changed {
		q.log.Warn("builds interrupted by the last stop are marked final")
		return q.saveLocked()
	}
	return nil
}

// saveLocked writes the records atomically. q.mu must be held.
func (q *Queue) saveLocked() error {
	b, err := json.MarshalIndent(queueFile{NextID: q.nextID, Builds: q.records}, "", " ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(q.file(), b, 0o640); err != nil {
		return fmt.Errorf("build: cannot save build records: %w", err)
	}
	return nil
}

func (q *Queue) save() {
	if err := q.saveLocked(); err != nil {
		q.log.Error("cannot save build records", "err", err)
	}
}

func key(app, branch string) string { return app + "\x00" + branch }

// Submit queues a build and returns its record. A queued build of the same (App, Branch) is
// cancelled and marked superseded by this one; a running one too when spec.CancelRunning.
func (q *Queue) Submit(spec Spec) (Record, error) {
	if spec.App == "" {
		return Record{}, fmt.Errorf("build: %w: a build needs an app name", ErrBadRequest)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	id := strconv.FormatInt(q.nextID, 10)
	q.nextID++
	now := time.Now()
	rec := &Record{ID: id, App: spec.App, Branch: spec.Branch, Commit: spec.Commit, Dockerfile: spec.dockerfile(),
		Refs: slices.Clone(spec.Refs), Status: StatusQueued, Queued: now}
	k := key(spec.App, spec.Branch)
	for _, j := range q.jobs {
		if j.key != k {
			continue
		}
		switch {
		case j.rec.Status == StatusQueued:
			j.rec.SupersededBy = id
			q.finishLocked(j, StatusCancelled, "superseded by build "+id, now)
		case j.rec.Status == StatusRunning && spec.CancelRunning:
			j.supersededBy = id
			j.cancel(fmt.Errorf("superseded by build %s", id))
		}
	}
	if err := os.WriteFile(q.LogPath(id), nil, 0o640); err != nil {
		return Record{}, fmt.Errorf("build: cannot create log: %w", err)
	}
	j := &job{rec: rec, req: spec.Request, prepare: spec.Prepare, key: k, done: make(chan struct{})}
	q.jobs[id] = j
	q.records = append(q.records, rec)
	q.pruneLocked()
	q.save()
	q.log.Info("build queued", "id", id, "app", spec.App, "branch", spec.Branch, "commit", spec.Commit)
	q.wake()
	return *rec, nil
}

func (q *Queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// pruneLocked drops the oldest final records (and their logs) beyond MaxRecords.
func (q *Queue) pruneLocked() {
	excess := len(q.records) - q.cfg.MaxRecords
	if excess <= 0 {
		return
	}
	// The newest successful build of each (app, branch) stays — environments that follow the
	// branch run it, however many builds of other branches came since — for the most recently
	// built half of MaxRecords branches; older branches' records go like any other.
	newest := map[string]*Record{}
	for _, r := range q.records {
		if r.Status == StatusSucceeded {
			newest[key(r.App, r.Branch)] = r
		}
	}
	protected := map[*Record]bool{}
	for i := len(q.records) - 1; i >= 0 && len(protected) < q.cfg.MaxRecords/2; i-- {
		if r := q.records[i]; newest[key(r.App, r.Branch)] == r {
			protected[r] = true
		}
	}
	kept := q.records[:0]
	for _, r := range q.records {
		if excess > 0 && r.Status.Final() && !protected[r] {
			excess--
			_ = os.Remove(q.LogPath(r.ID))
			continue
		}
		kept = append(kept, r)
	}
	clear(q.records[len(kept):])
	q.records = kept
}

// finishLocked makes j's record final. q.mu must be held.
func (q *Queue) finishLocked(j *job, st Status, errMsg string, now time.Time) {
	j.rec.Status, j.rec.Error, j.rec.Finished = st, errMsg, now
	if !j.rec.Started.IsZero() {
		j.rec.DurationMS = now.Sub(j.rec.Started).Milliseconds()
	}
	delete(q.jobs, j.rec.ID)
	if q.running[j.key] == j {
		delete(q.running, j.key)
	}
	close(j.done)
	j.notify.signal()
	for _, f := range q.onFinish {
		rec := *j.rec
		rec.Refs = slices.Clone(j.rec.Refs)
		go f(rec)
	}
	q.log.Info("build finished", "id", j.rec.ID, "app", j.rec.App, "branch", j.rec.Branch, "status", st, "err", errMsg)
}

// Name implements supervise.Component.
func (q *Queue) Name() string { return "build-queue" }

// WaitReady implements supervise.Component; the queue is ready once constructed.
func (q *Queue) WaitReady(context.Context) error { return nil }

// Run starts queued builds, up to Concurrency at once and one per key, until ctx ends; then it
// cancels the running builds, marks them failed ("interrupted by shutdown"), and returns nil.
func (q *Queue) Run(ctx context.Context) error {
	defer q.wg.Wait()
	for {
		q.dispatch(ctx)
		select {
		case <-ctx.Done():
			q.mu.Lock()
			for _, j := range q.running {
				j.cancel(errShutdown)
			}
			q.mu.Unlock()
			return nil
		case <-q.kick:
		}
	}
}

func (q *Queue) dispatch(ctx context.Context) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	for len(q.running) < q.cfg.Concurrency {
		var next *job
		for _, j := range q.jobs {
			if j.rec.Status != StatusQueued || q.running[j.key] != nil {
				continue
			}
			if next == nil || idLess(j.rec.ID, next.rec.ID) {
				next = j
			}
		}
		if next == nil {
			return
		}
		q.startLocked(ctx, next)
	}
}

func idLess(a, b string) bool {
	ai, _ := strconv.ParseInt(a, 10, 64)
	bi, _ := strconv.ParseInt(b, 10, 64)
	return ai < bi
}

func (q *Queue) startLocked(ctx context.Context, j *job) {
	// Only Run's shutdown, Cancel and a superseding Submit end a build, each with its cause.
	bctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	j.cancel = cancel
	j.rec.Status, j.rec.Started = StatusRunning, time.Now()
	q.running[j.key] = j
	q.save()
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		defer cancel(nil)
		res, err := q.runJob(bctx, j)
		q.mu.Lock()
		defer q.mu.Unlock()
		now := time.Now()
		cause := context.Cause(bctx)
		switch {
		case err == nil:
			j.rec.Digest = res.Digest
			q.finishLocked(j, StatusSucceeded, "", now)
		case bctx.Err() != nil && errors.Is(cause, errShutdown):
			q.finishLocked(j, StatusFailed, errShutdown.Error(), now)
		case bctx.Err() != nil && j.supersededBy != "":
			j.rec.SupersededBy = j.supersededBy
			q.finishLocked(j, StatusCancelled, cause.Error(), now)
		case bctx.Err() != nil && errors.Is(cause, errCancelRequested):
			q.finishLocked(j, StatusCancelled, cause.Error(), now)
		default:
			q.finishLocked(j, StatusFailed, err.Error(), now)
		}
		q.save()
		q.wake()
	}()
}

func (q *Queue) runJob(ctx context.Context, j *job) (Result, error) {
	f, err := os.OpenFile(q.LogPath(j.rec.ID), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return Result{}, fmt.Errorf("build: cannot open log: %w", err)
	}
	defer f.Close()
	w := &notifyWriter{w: f, n: &j.notify}
	r := j.rec
	fmt.Fprintf(w, "build %s of %s", r.ID, r.App)
	if r.Branch != "" {
		fmt.Fprintf(w, " branch %s", r.Branch)
	}
	if r.Commit != "" {
		fmt.Fprintf(w, " commit %s", r.Commit)
	}
	fmt.Fprintf(w, " (%s) started %s\n", r.Dockerfile, r.Started.UTC().Format(time.RFC3339))
	req := j.req
	if j.prepare != nil {
		dir, err := j.prepare(ctx, w)
		if err != nil {
			fmt.Fprintf(w, "\nERROR: %v\n", err)
			return Result{}, err
		}
		req.ContextDir = dir
	}
	return q.build(ctx, req, w)
}

// Cancel cancels build id: a queued build is cancelled at once, a running one is stopped and
// becomes cancelled when BuildKit has let go of it (Wait for that).
func (q *Queue) Cancel(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	j := q.jobs[id]
	if j == nil {
		if q.find(id) != nil {
			return fmt.Errorf("build %s: %w", id, ErrFinished)
		}
		return fmt.Errorf("build %s: %w", id, ErrNotFound)
	}
	if j.rec.Status == StatusQueued {
		q.finishLocked(j, StatusCancelled, errCancelRequested.Error(), time.Now())
		q.save()
		return nil
	}
	j.cancel(errCancelRequested)
	return nil
}

func (q *Queue) find(id string) *Record {
	for i := len(q.records) - 1; i >= 0; i-- {
		if q.records[i].ID == id {
			return q.records[i]
		}
	}
	return nil
}

// Get returns the record of build id.
func (q *Queue) Get(id string) (Record, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.find(id); r != nil {
		return *r, nil
	}
	return Record{}, fmt.Errorf("build %s: %w", id, ErrNotFound)
}

// Filter selects records for List; zero fields match everything.
type Filter struct {
	App    string
	Branch string
	Status Status
	// Limit is the most records returned; zero means all.
	Limit int
}

// List returns the records that match f, newest first.
func (q *Queue) List(f Filter) []Record {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Record
	for i := len(q.records) - 1; i >= 0; i-- {
		r := q.records[i]
		if (f.App != "" && r.App != f.App) || (f.Branch != "" && r.Branch != f.Branch) || (f.Status != "" && r.Status != f.Status) {
			continue
		}
		rc := *r
		rc.Refs = slices.Clone(r.Refs)
		out = append(out, rc)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out
}

// LatestSucceeded returns the newest successful build of (app, branch): what an environment
// that follows the branch runs.
func (q *Queue) LatestSucceeded(app, branch string) (Record, bool) {
	rs := q.List(Filter{App: app, Branch: branch, Status: StatusSucceeded, Limit: 1})
	if len(rs) == 0 {
		return Record{}, false
	}
	return rs[0], true
}

// Wait blocks until build id is final or ctx ends, and returns its record.
func (q *Queue) Wait(ctx context.Context, id string) (Record, error) {
	q.mu.Lock()
	j := q.jobs[id]
	q.mu.Unlock()
	if j != nil {
		select {
		case <-j.done:
		case <-ctx.Done():
			return Record{}, ctx.Err()
		}
	}
	return q.Get(id)
}

// Logs opens the log of build id. With follow, the reader returns what is written while the
// build runs (or waits in the queue) and reaches EOF only once the build is final or ctx ends
// (then it returns ctx's error); without, it reads what is there now.
func (q *Queue) Logs(ctx context.Context, id string, follow bool) (io.ReadCloser, error) {
	if _, err := q.Get(id); err != nil {
		return nil, err
	}
	f, err := os.Open(q.LogPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil // pruned or never written
	}
	if err != nil {
		return nil, fmt.Errorf("build %s: cannot open log: %w", id, err)
	}
	if !follow {
		return f, nil
	}
	return &followReader{q: q, id: id, f: f, ctx: ctx}, nil
}

// logState returns a channel that is closed at the next write to build id's log, or done when
// the build is final (no more writes will come).
func (q *Queue) logState(id string) (changed <-chan struct{}, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j := q.jobs[id]
	if j == nil {
		return nil, true
	}
	return j.notify.wait(), false
}

type followReader struct {
	q   *Queue
	id  string
	f   *os.File
	ctx context.Context
}

func (r *followReader) Read(p []byte) (int, error) {
	for {
		// Taking the state before reading means a write between the read and the wait
		// still wakes us.
		changed, done := r.q.logState(r.id)
		n, err := r.f.Read(p)
		if n > 0 || !errors.Is(err, io.EOF) || done {
			return n, err
		}
		select {
		case <-changed:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *followReader) Close() error { return r.f.Close() }

// notifier lets readers wait for the next write.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) signal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

type notifyWriter struct {
	w io.Writer
	n *notifier
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n.signal()
	return n, err
}
