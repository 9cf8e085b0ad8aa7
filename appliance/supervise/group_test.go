package supervise

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder collects lifecycle events of fake components in the order they happen.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// fake is a component that records "run", "ready" and "stop" events; its Run ends on cancel
// (returning stopErr) or when fail is closed (returning failErr).
type fake struct {
	name     string
	rec      *recorder
	ready    func(ctx context.Context) error // nil: ready at once
	runErr   error                           // non-nil: Run returns it at once
	runNil   bool                            // Run returns nil at once
	stopErr  error
	failErr  error
	fail     chan struct{}
	ignoreCx bool // Run ignores its context (a component that does not stop)
	critical bool
}

func (f *fake) Name() string   { return f.name }
func (f *fake) Critical() bool { return f.critical }

func (f *fake) Run(ctx context.Context) error {
	f.rec.add("run " + f.name)
	switch {
	case f.runErr != nil:
		return f.runErr
	case f.runNil:
		return nil
	case f.ignoreCx:
		select {}
	}
	select {
	case <-ctx.Done():
		f.rec.add("stop " + f.name)
		return f.stopErr
	case <-f.fail:
		return f.failErr
	}
}

func (f *fake) WaitReady(ctx context.Context) error {
	if f.ready != nil {
		return f.ready(ctx)
	}
	return nil
}

var _ Component = (*fake)(nil)

func newTestGroup(t *testing.T, readyTimeout, stopTimeout time.Duration) *Group {
	t.Helper()
	g := NewGroup(slog.New(slog.DiscardHandler), GroupConfig{ReadyTimeout: readyTimeout, StopTimeout: stopTimeout})
	t.Cleanup(func() { _ = g.Stop() })
	return g
}

func stateNames(states []State) []string {
	var out []string
	for _, s := range states {
		out = append(out, s.Name+"="+s.State)
	}
	return out
}

func TestGroupStartsInOrderStopsInReverse(t *testing.T) {
	rec := &recorder{}
	g := newTestGroup(t, 5*time.Second, 5*time.Second)
	for _, n := range []string{"a", "b", "c"} {
		f := &fake{name: n, rec: rec}
		f.ready = func(ctx context.Context) error { rec.add("ready " + n); return nil }
		if err := g.Start(context.Background(), f); err != nil {
			t.Fatalf("Start(%s) = %v", n, err)
		}
	}
	if diff := cmp.Diff([]string{"a=ready", "b=ready", "c=ready"}, stateNames(g.States())); diff != "" {
		t.Errorf("states after start (-want +got)\n%s", diff)
	}
	if err := g.Stop(); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	// "run x" and "ready x" of one component may come in either order.
	var stops []string
	for _, e := range rec.get() {
		if strings.HasPrefix(e, "stop ") {
			stops = append(stops, e)
		}
	}
	if diff := cmp.Diff([]string{"stop c", "stop b", "stop a"}, stops); diff != "" {
		t.Errorf("stop order (-want +got)\n%s", diff)
	}
	ev := rec.get()
	idx := func(e string) int {
		for i, x := range ev {
			if x == e {
				return i
			}
		}
		t.Fatalf("no event %q in %q", e, ev)
		return -1
	}
	if !(idx("ready a") < idx("run b") && idx("ready b") < idx("run c")) {
		t.Errorf("a component started before the previous one was ready: %q", ev)
	}
	if diff := cmp.Diff([]string{"a=stopped", "b=stopped", "c=stopped"}, stateNames(g.States())); diff != "" {
		t.Errorf("states after stop (-want +got)\n%s", diff)
	}
	if err := g.Stop(); err != nil {
		t.Errorf("a second Stop = %v, want nil", err)
	}
}

// TestGroupStartFailures: a critical component that does not become ready fails Start.
func TestGroupStartFailures(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		comp      func(rec *recorder) *fake
		want      []string // substrings of Start's error
		wantIs    error
		wantStops []string
	}{
		{
			name: "WaitReady fails",
			comp: func(rec *recorder) *fake {
				return &fake{name: "bad", critical: true, rec: rec, ready: func(context.Context) error { return boom }}
			},
			want: []string{"bad did not become ready: boom"}, wantIs: boom, wantStops: []string{"stop bad"},
		},
		{
			name: "WaitReady times out",
			comp: func(rec *recorder) *fake {
				return &fake{name: "slow", critical: true, rec: rec, ready: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
			},
			want: []string{"slow did not become ready within 200ms"}, wantIs: context.DeadlineExceeded, wantStops: []string{"stop slow"},
		},
		{
			name: "Run fails before ready",
			comp: func(rec *recorder) *fake {
				return &fake{name: "crash", critical: true, rec: rec, runErr: boom, ready: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
			},
			want: []string{"crash failed to start: boom"}, wantIs: boom,
		},
		{
			name: "Run returns nil before ready",
			comp: func(rec *recorder) *fake {
				return &fake{name: "quitter", critical: true, rec: rec, runNil: true, ready: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}
			},
			want: []string{"quitter failed to start: stopped before it was ready"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			g := newTestGroup(t, 200*time.Millisecond, 2*time.Second)
			first := &fake{name: "first", rec: rec}
			if err := g.Start(context.Background(), first); err != nil {
				t.Fatal(err)
			}
			err := g.Start(context.Background(), tc.comp(rec))
			if err == nil {
				t.Fatal("Start succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q does not wrap %v", err, tc.wantIs)
			}
			var stops []string
			for _, e := range rec.get() {
				if strings.HasPrefix(e, "stop ") {
					stops = append(stops, e)
				}
			}
			if diff := cmp.Diff(tc.wantStops, stops); diff != "" {
				t.Errorf("stopped components (-want +got); the earlier one must keep running\n%s", diff)
			}
			states := g.States()
			if len(states) != 2 || states[0].State != "ready" || states[1].State != "failed" || states[1].Error == "" {
				t.Errorf("states = %+v, want first ready and the failed one with its error", states)
			}
			if err := g.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := rec.get(); got[len(got)-1] != "stop first" {
				t.Errorf("Stop must stop the components started before the failure: %q", got)
			}
		})
	}
}

// TestGroupFailedDeliversRuntimeFailure: a critical component failing after it was ready
// arrives on Failed.
func TestGroupFailedDeliversRuntimeFailure(t *testing.T) {
	rec := &recorder{}
	g := newTestGroup(t, time.Second, time.Second)
	boom := errors.New("lost its socket")
	f := &fake{name: "flaky", critical: true, rec: rec, fail: make(chan struct{}), failErr: boom}
	if err := g.Start(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.Failed():
		t.Fatalf("Failed delivered %v before anything failed", err)
	default:
	}
	close(f.fail)
	select {
	case err := <-g.Failed():
		if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "flaky: ") {
			t.Errorf("Failed delivered %q, want the error wrapped with the component's name", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Failed delivered nothing")
	}
	if st := g.States(); len(st) != 1 || st[0].State != "failed" || st[0].Error != boom.Error() || !st[0].Critical {
		t.Errorf("states = %+v, want flaky failed and critical", st)
	}
}

func TestGroupStop(t *testing.T) {
	t.Run("reports errors of stopping components", func(t *testing.T) {
		rec := &recorder{}
		g := newTestGroup(t, time.Second, time.Second)
		bad := errors.New("unclean")
		for _, f := range []*fake{{name: "ok", rec: rec}, {name: "messy", rec: rec, stopErr: bad}} {
			if err := g.Start(context.Background(), f); err != nil {
				t.Fatal(err)
			}
		}
		err := g.Stop()
		if !errors.Is(err, bad) || !strings.Contains(err.Error(), "messy: unclean") {
			t.Errorf("Stop = %v, want the error of messy", err)
		}
		st := g.States()
		if st[1].State != "stopped" || st[1].Error != "unclean" {
			t.Errorf("state of messy = %+v", st[1])
		}
	})
	t.Run("does not wait forever for a stuck component", func(t *testing.T) {
		rec := &recorder{}
		g := newTestGroup(t, time.Second, 200*time.Millisecond)
		if err := g.Start(context.Background(), &fake{name: "stuck", rec: rec, ignoreCx: true}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := g.Stop(); err != nil {
			t.Errorf("Stop = %v", err)
		}
		if took := time.Since(start); took < 200*time.Millisecond || took > 2*time.Second {
			t.Errorf("Stop took %s, want about the stop timeout (200ms)", took)
		}
	})
}

func TestFuncComponent(t *testing.T) {
	ran := false
	f := Func{N: "f", R: func(context.Context) error { ran = true; return nil }}
	if f.Name() != "f" {
		t.Errorf("Name = %q", f.Name())
	}
	if err := f.WaitReady(context.Background()); err != nil {
		t.Errorf("WaitReady without Ready = %v, want nil", err)
	}
	if err := f.Run(context.Background()); err != nil || !ran {
		t.Errorf("Run = %v, ran %v", err, ran)
	}
	want := errors.New("no")
	f.Ready = func(context.Context) error { return want }
	if err := f.WaitReady(context.Background()); err != want {
		t.Errorf("WaitReady = %v, want %v", err, want)
	}
}
