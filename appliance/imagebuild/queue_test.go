package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeBuilds is a BuildFunc whose builds run until the test finishes them. A build is named by
// its Request.ContextDir (the queue never looks inside it).
type fakeBuilds struct {
	started chan string
	mu      sync.Mutex
	ctl     map[string]chan fakeStep
}

type fakeStep struct {
	line string // written to the log, if set
	err  error  // ends the build with this error
	done bool   // ends the build successfully
}

func newFakeBuilds() *fakeBuilds {
	return &fakeBuilds{started: make(chan string, 100), ctl: map[string]chan fakeStep{}}
}

func (f *fakeBuilds) ch(name string) chan fakeStep {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctl[name] == nil {
		f.ctl[name] = make(chan fakeStep)
	}
	return f.ctl[name]
}

func (f *fakeBuilds) build(ctx context.Context, req Request, log io.Writer) (Result, error) {
	name := req.ContextDir
	fmt.Fprintf(log, "building %s\n", name)
	f.started <- name
	ch := f.ch(name)
	for {
		select {
		case s := <-ch:
			switch {
			case s.line != "":
				fmt.Fprintln(log, s.line)
			case s.err != nil:
				return Result{}, s.err
			case s.done:
				return Result{Digest: "sha256:" + name, Refs: req.Refs}, nil
			}
		case <-ctx.Done():
			fmt.Fprintln(log, "stopping")
			return Result{}, fmt.Errorf("build: cancelled: %w", context.Cause(ctx))
		}
	}
}

// step sends s to build name, failing the test if the build does not take it in time.
func (f *fakeBuilds) step(t *testing.T, name string, s fakeStep) {
	t.Helper()
	select {
	case f.ch(name) <- s:
	case <-time.After(5 * time.Second):
		t.Fatalf("build %s is not running", name)
	}
}

// waitStarted waits for the next build to start and checks it is want.
func (f *fakeBuilds) waitStarted(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-f.started:
		if got != want {
			t.Fatalf("build %s started, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("build %s did not start", want)
	}
}

// noneStarted checks no build starts within a short while.
func (f *fakeBuilds) noneStarted(t *testing.T) {
	t.Helper()
	select {
	case got := <-f.started:
		t.Fatalf("build %s started, want none", got)
	case <-time.After(100 * time.Millisecond):
	}
}

type testQueue struct {
	*Queue
	fake     *fakeBuilds
	dir      string
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// newTestQueue starts a queue on dir (a new temp dir if empty) with fake builds; Cleanup stops
// it and checks Run returned nil.
func newTestQueue(t *testing.T, dir string, cfg QueueConfig, opts ...QueueOption) *testQueue {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg.Dir = dir
	fake := newFakeBuilds()
	q, err := NewQueue(cfg, fake.build, testLog(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tq := &testQueue{Queue: q, fake: fake, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { tq.done <- q.Run(ctx) }()
	t.Cleanup(func() { tq.stop(t) })
	return tq
}

func (tq *testQueue) stop(t *testing.T) {
	t.Helper()
	tq.stopOnce.Do(func() {
		tq.cancel()
		select {
		case err := <-tq.done:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})
}

func (tq *testQueue) submit(t *testing.T, app, branch, name string, opts ...func(*Spec)) Record {
	t.Helper()
	s := Spec{App: app, Branch: branch, Commit: "c-" + name, Request: Request{ContextDir: name, Refs: []string{"127.0.0.1:5000/" + app + ":" + name}}}
	for _, o := range opts {
		o(&s)
	}
	r, err := tq.Submit(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (tq *testQueue) wait(t *testing.T, id string) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := tq.Wait(ctx, id)
	if err != nil {
		t.Fatalf("build %s: %v", id, err)
	}
	return r
}

func (tq *testQueue) status(t *testing.T, id string) Status {
	t.Helper()
	r, err := tq.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	return r.Status
}

func TestQueueNewerBuildSupersedesQueuedOne(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{Concurrency: 2})
	first := tq.submit(t, "shop", "main", "a1")
	tq.fake.waitStarted(t, "a1")
	// Same key: waits for the running build even though a slot is free.
	second := tq.submit(t, "shop", "main", "a2")
	tq.fake.noneStarted(t)
	third := tq.submit(t, "shop", "main", "a3")

	r := tq.wait(t, second.ID)
	want := Record{Status: StatusCancelled, Error: "superseded by build " + third.ID, SupersededBy: third.ID}
	if diff := cmp.Diff(want, Record{Status: r.Status, Error: r.Error, SupersededBy: r.SupersededBy}); diff != "" {
		t.Errorf("superseded build (-want +got):\n%s", diff)
	}
	if !r.Started.IsZero() || r.Finished.IsZero() {
		t.Errorf("superseded build: started %v finished %v; want never started, finished", r.Started, r.Finished)
	}
	if st := tq.status(t, first.ID); st != StatusRunning {
		t.Errorf("the running build is %s; a newer queued build must not cancel it", st)
	}

	tq.fake.step(t, "a1", fakeStep{done: true})
	tq.fake.waitStarted(t, "a3") // never a2
	tq.fake.step(t, "a3", fakeStep{done: true})
	if r := tq.wait(t, third.ID); r.Status != StatusSucceeded || r.Digest != "sha256:a3" {
		t.Errorf("third build: %+v", r)
	}
	if r := tq.wait(t, first.ID); r.Status != StatusSucceeded || r.Digest != "sha256:a1" || r.DurationMS < 0 || r.Duration() <= 0 {
		t.Errorf("first build: %+v", r)
	}
	latest, ok := tq.LatestSucceeded("shop", "main")
	if !ok || latest.ID != third.ID {
		t.Errorf("LatestSucceeded = %v %v, want build %s", latest.ID, ok, third.ID)
	}
}

func TestQueueCancelRunningWhenAsked(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{})
	first := tq.submit(t, "shop", "pr-7", "a1")
	tq.fake.waitStarted(t, "a1")
	second := tq.submit(t, "shop", "pr-7", "a2", func(s *Spec) { s.CancelRunning = true })
	r := tq.wait(t, first.ID)
	if r.Status != StatusCancelled || r.SupersededBy != second.ID || !strings.Contains(r.Error, "superseded by build "+second.ID) {
		t.Errorf("cancelled running build: %+v", r)
	}
	tq.fake.waitStarted(t, "a2")
	tq.fake.step(t, "a2", fakeStep{done: true})
	if r := tq.wait(t, second.ID); r.Status != StatusSucceeded {
		t.Errorf("second build: %+v", r)
	}
}

func TestQueueConcurrencyLimit(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{Concurrency: 2})
	a := tq.submit(t, "a", "main", "a")
	b := tq.submit(t, "b", "main", "b")
	c := tq.submit(t, "c", "main", "c")
	tq.fake.waitStarted(t, "a")
	tq.fake.waitStarted(t, "b")
	tq.fake.noneStarted(t)
	if st := tq.status(t, c.ID); st != StatusQueued {
		t.Fatalf("third build is %s with two running and a limit of 2", st)
	}
	tq.fake.step(t, "b", fakeStep{err: errors.New("step 3 failed")})
	tq.fake.waitStarted(t, "c")
	if r := tq.wait(t, b.ID); r.Status != StatusFailed || r.Error != "step 3 failed" {
		t.Errorf("failed build: %+v", r)
	}
	tq.fake.step(t, "a", fakeStep{done: true})
	tq.fake.step(t, "c", fakeStep{done: true})
	tq.wait(t, a.ID)
	tq.wait(t, c.ID)
	var got []string
	for _, r := range tq.List(Filter{}) {
		got = append(got, r.ID+":"+string(r.Status))
	}
	if diff := cmp.Diff([]string{"3:succeeded", "2:failed", "1:succeeded"}, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if got := tq.List(Filter{Status: StatusFailed}); len(got) != 1 || got[0].App != "b" {
		t.Errorf("List(failed) = %+v", got)
	}
	if got := tq.List(Filter{Limit: 1}); len(got) != 1 || got[0].ID != "3" {
		t.Errorf("List(limit 1) = %+v", got)
	}
}

func TestQueueCancel(t *testing.T) {
	finished := make(chan Record, 10)
	tq := newTestQueue(t, "", QueueConfig{}, WithOnFinish(func(r Record) { finished <- r }))
	running := tq.submit(t, "a", "main", "a")
	tq.fake.waitStarted(t, "a")
	queued := tq.submit(t, "b", "main", "b")

	if err := tq.Cancel(queued.ID); err != nil {
		t.Fatal(err)
	}
	if r := tq.wait(t, queued.ID); r.Status != StatusCancelled || r.Error != "cancelled on request" {
		t.Errorf("cancelled queued build: %+v", r)
	}
	if err := tq.Cancel(running.ID); err != nil {
		t.Fatal(err)
	}
	r := tq.wait(t, running.ID)
	if r.Status != StatusCancelled || r.Error != "cancelled on request" {
		t.Errorf("cancelled running build: %+v", r)
	}
	if err := tq.Cancel(running.ID); !errors.Is(err, ErrFinished) {
		t.Errorf("Cancel(finished) = %v, want ErrFinished", err)
	}
	if err := tq.Cancel("999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := tq.Get("999"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	got := map[string]Status{}
	for range 2 {
		select {
		case r := <-finished:
			got[r.ID] = r.Status
		case <-time.After(5 * time.Second):
			t.Fatal("OnFinish was not called")
		}
	}
	if diff := cmp.Diff(map[string]Status{running.ID: StatusCancelled, queued.ID: StatusCancelled}, got); diff != "" {
		t.Errorf("OnFinish (-want +got):\n%s", diff)
	}
	if _, err := tq.Submit(Spec{}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Submit without app = %v, want ErrBadRequest", err)
	}
}

func TestQueuePersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	tq := newTestQueue(t, dir, QueueConfig{})
	done := tq.submit(t, "a", "main", "a")
	tq.fake.waitStarted(t, "a")
	tq.fake.step(t, "a", fakeStep{done: true})
	tq.wait(t, done.ID)
	crashed := tq.submit(t, "b", "main", "b")
	tq.fake.waitStarted(t, "b")
	never := tq.submit(t, "c", "main", "c")

	// A second process opens the same directory as if the first had died right now.
	q2, err := NewQueue(QueueConfig{Dir: dir}, newFakeBuilds().build, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		ID     string
		Status Status
		Error  string
		Digest string
	}
	var got []row
	for _, r := range q2.List(Filter{}) {
		got = append(got, row{r.ID, r.Status, r.Error, r.Digest})
	}
	want := []row{
		{never.ID, StatusCancelled, "interrupted by restart before it started", ""},
		{crashed.ID, StatusFailed, "interrupted by restart", ""},
		{done.ID, StatusSucceeded, "", "sha256:a"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records after restart (-want +got):\n%s", diff)
	}
	r, err := q2.Submit(Spec{App: "d", Request: Request{ContextDir: "d"}})
	if err != nil || r.ID != "4" {
		t.Errorf("first build after restart: id %q, %v; want 4 (ids are never reused)", r.ID, err)
	}
	logs, err := q2.Logs(t.Context(), done.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(logs)
	logs.Close()
	if err != nil || !strings.Contains(string(b), "building a") {
		t.Errorf("log of a build from before the restart: %q, %v", b, err)
	}

	// A clean stop marks the running build failed.
	tq.stop(t)
	if r, _ := tq.Get(crashed.ID); r.Status != StatusFailed || r.Error != "interrupted by shutdown" {
		t.Errorf("build running at shutdown: %+v", r)
	}
}

func TestQueueCorruptRecordsAreReported(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/builds.json", []byte("{not json"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := NewQueue(QueueConfig{Dir: dir}, newFakeBuilds().build, testLog(t))
	if err == nil || !strings.Contains(err.Error(), "builds.json") {
		t.Errorf("NewQueue on a corrupt file = %v, want an error naming it", err)
	}
}

func TestQueueFollowLogs(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{})
	blocker := tq.submit(t, "a", "main", "a")
	tq.fake.waitStarted(t, "a")
	r := tq.submit(t, "b", "main", "b")

	// Follow from while it is queued to after it finished.
	rc, err := tq.Logs(t.Context(), r.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	lines := make(chan string, 100)
	readErr := make(chan error, 1)
	go func() {
		var buf [8]byte // small reads exercise partial lines
		var line []byte
		for {
			n, err := rc.Read(buf[:])
			for _, c := range buf[:n] {
				if c == '\n' {
					lines <- string(line)
					line = nil
					continue
				}
				line = append(line, c)
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case got := <-lines:
			if !strings.Contains(got, want) {
				t.Fatalf("followed line %q, want one containing %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no line with %q arrived while following", want)
		}
	}
	tq.fake.step(t, "a", fakeStep{done: true})
	tq.fake.waitStarted(t, "b")
	next("build " + r.ID + " of b branch main commit c-b")
	next("building b")
	for i := range 3 {
		tq.fake.step(t, "b", fakeStep{line: fmt.Sprintf("#%d step", i)})
		next(fmt.Sprintf("#%d step", i))
	}
	select {
	case err := <-readErr:
		t.Fatalf("the follower stopped (%v) while the build runs", err)
	default:
	}
	tq.fake.step(t, "b", fakeStep{done: true})
	select {
	case err := <-readErr:
		if err != io.EOF {
			t.Errorf("follower ended with %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the follower did not end after the build finished")
	}
	tq.wait(t, blocker.ID)

	// Without follow: what is there now.
	rc2, err := tq.Logs(t.Context(), r.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc2)
	rc2.Close()
	if !strings.HasSuffix(string(b), "#2 step\n") {
		t.Errorf("log = %q", b)
	}

	// A follower of a running build stops with its context.
	tq.submit(t, "c", "main", "c")
	tq.fake.waitStarted(t, "c")
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	rc3, err := tq.Logs(ctx, "3", true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc3.Close()
	if _, err := io.ReadAll(rc3); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("following with an ended context = %v, want its error", err)
	}
	tq.fake.step(t, "c", fakeStep{done: true})
	if _, err := tq.Logs(t.Context(), "999", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("Logs(unknown) = %v, want ErrNotFound", err)
	}
}

func TestQueuePrunesOldRecords(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{MaxRecords: 3})
	var ids []string
	for i := range 5 {
		name := fmt.Sprintf("b%d", i)
		r := tq.submit(t, "a", name, name)
		tq.fake.waitStarted(t, name)
		tq.fake.step(t, name, fakeStep{done: true})
		tq.wait(t, r.ID)
		ids = append(ids, r.ID)
	}
	tq.submit(t, "a", "last", "last") // pruning happens at submit
	tq.fake.waitStarted(t, "last")
	got := tq.List(Filter{})
	if len(got) != 3 || got[2].ID != ids[3] {
		t.Errorf("kept %d records, oldest %s; want 3, oldest %s", len(got), got[len(got)-1].ID, ids[3])
	}
	if _, err := os.Stat(tq.LogPath(ids[0])); !os.IsNotExist(err) {
		t.Errorf("log of a pruned build still exists: %v", err)
	}
	tq.fake.step(t, "last", fakeStep{done: true})
}

func TestQueuePruningKeepsEachBranchsNewestSuccess(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{MaxRecords: 4})
	quiet := tq.submit(t, "a", "quiet", "q0")
	tq.fake.waitStarted(t, "q0")
	tq.fake.step(t, "q0", fakeStep{done: true})
	tq.wait(t, quiet.ID)
	for i := range 5 {
		name := fmt.Sprintf("busy%d", i)
		r := tq.submit(t, "a", "busy", name)
		tq.fake.waitStarted(t, name)
		tq.fake.step(t, name, fakeStep{done: true})
		tq.wait(t, r.ID)
	}
	if r, ok := tq.LatestSucceeded("a", "quiet"); !ok || r.ID != quiet.ID {
		t.Fatalf("the quiet branch's only success was pruned: %+v %v", r, ok)
	}
	if n := len(tq.List(Filter{})); n > 5 {
		t.Fatalf("%d records kept, want at most MaxRecords (+1 in flight)", n)
	}
}

func TestQueuePrepareRunsAtStartAndItsErrorFailsTheBuild(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{})
	prepared := make(chan struct{}, 1)
	ok := tq.submit(t, "app", "main", "placeholder", func(s *Spec) {
		s.Prepare = func(ctx context.Context, log io.Writer) (string, error) {
			fmt.Fprintln(log, "checking out")
			prepared <- struct{}{}
			return "checked-out", nil
		}
	})
	<-prepared
	tq.fake.waitStarted(t, "checked-out") // the build saw Prepare's directory
	tq.fake.step(t, "checked-out", fakeStep{done: true})
	if r := tq.wait(t, ok.ID); r.Status != StatusSucceeded {
		t.Fatalf("status %s, want succeeded", r.Status)
	}

	bad := tq.submit(t, "app", "main", "never", func(s *Spec) {
		s.Prepare = func(context.Context, io.Writer) (string, error) {
			return "", errors.New("commit abc not found")
		}
	})
	r := tq.wait(t, bad.ID)
	if r.Status != StatusFailed || !strings.Contains(r.Error, "commit abc not found") {
		t.Fatalf("record %+v, want failed with the prepare error", r)
	}
	tq.fake.noneStarted(t)
	rc, err := tq.Logs(context.Background(), bad.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	if !strings.Contains(string(b), "ERROR: commit abc not found") {
		t.Fatalf("log %q does not say why", b)
	}
}
