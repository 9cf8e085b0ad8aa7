package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/google/go-cmp/cmp"
)

// waitGroupState polls g until the state of the component name satisfies ok.
func waitGroupState(t *testing.T, g *Group, name string, within time.Duration, ok func(State) bool) State {
	t.Helper()
	var found State
	testbin.Eventually(t, within, name+" in the wanted state", func() bool {
		for _, st := range g.States() {
			if st.Name == name && ok(st) {
				found = st
				return true
			}
		}
		return false
	})
	return found
}

func noFailure(t *testing.T, g *Group) {
	t.Helper()
	select {
	case err := <-g.Failed():
		t.Fatalf("Failed delivered %v for a non-critical component", err)
	default:
	}
}

func TestGroupRefusesDuplicateNames(t *testing.T) {
	rec, rec2 := &recorder{}, &recorder{}
	g := newTestGroup(t, time.Second, time.Second)
	if err := g.Start(context.Background(), &fake{name: "builds", rec: rec}); err != nil {
		t.Fatal(err)
	}
	err := g.Start(context.Background(), &fake{name: "builds", rec: rec2, critical: true})
	if err == nil || !strings.Contains(err.Error(), "cannot start builds: another component has the same name") {
		t.Fatalf("Start of a second %q = %v, want it refused naming it", "builds", err)
	}
	if err := g.Start(context.Background(), &fake{name: "", rec: rec}); err == nil {
		t.Error("Start of a component without a name succeeded")
	}
	if diff := cmp.Diff([]string{"builds=ready"}, stateNames(g.States())); diff != "" {
		t.Errorf("states (-want +got)\n%s", diff)
	}
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := rec2.get(); len(got) != 0 {
		t.Errorf("events %q: the refused component must not run", got)
	}
}

// TestGroupNonCriticalNotReadyAtStart: a non-critical component that does not become ready
// does not fail Start; it is degraded and retried until it is ready.
func TestGroupNonCriticalNotReadyAtStart(t *testing.T) {
	// Each of WaitReady and Run counts its own calls: the Group calls each once per attempt.
	for _, tc := range []struct {
		name    string
		comp    func(runs, readies *counter) Component
		wantErr string
	}{
		{
			name: "WaitReady fails",
			comp: func(runs, readies *counter) Component {
				return Func{N: "flaky", R: blockRun(runs), Ready: func(ctx context.Context) error {
					if readies.add() < 3 {
						return errors.New("not yet")
					}
					return nil
				}}
			},
			wantErr: "did not become ready: not yet",
		},
		{
			name: "WaitReady times out",
			comp: func(runs, readies *counter) Component {
				return Func{N: "flaky", R: blockRun(runs), Ready: func(ctx context.Context) error {
					if readies.add() < 3 {
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				}}
			},
			wantErr: "did not become ready within 100ms",
		},
		{
			name: "Run fails before ready",
			comp: func(runs, readies *counter) Component {
				return Func{N: "flaky", R: func(ctx context.Context) error {
					if runs.add() < 3 {
						return errors.New("no socket")
					}
					<-ctx.Done()
					return nil
				}, Ready: func(ctx context.Context) error {
					if readies.add() < 3 {
						<-ctx.Done()
						return ctx.Err()
					}
					return nil
				}}
			},
			wantErr: "failed to start: no socket",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newTestGroup(t, 100*time.Millisecond, time.Second)
			clk := newFakeClock(g, 100)
			runs, readies := &counter{}, &counter{}
			if err := g.Start(context.Background(), tc.comp(runs, readies)); err != nil {
				t.Fatalf("Start = %v, want nil: the boot goes on without a non-critical component", err)
			}
			// Start returned after the first attempt; it is degraded with its error, or
			// already ready again after the two failed attempts.
			st := g.States()[0]
			if st.State == "degraded" && !strings.Contains(st.Error, tc.wantErr) {
				t.Errorf("state %+v: error does not contain %q", st, tc.wantErr)
			}
			st = waitGroupState(t, g, "flaky", 5*time.Second, func(s State) bool { return s.State == "ready" })
			if st.Restarts != 2 || st.Critical || st.Error != "" {
				t.Errorf("state %+v, want ready after 2 restarts, not critical, no error", st)
			}
			if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second}, clk.waits()); diff != "" {
				t.Errorf("backoff waits (-want +got)\n%s", diff)
			}
			if got := runs.get(); got != 3 {
				t.Errorf("%d Runs, want 3", got)
			}
			noFailure(t, g)
		})
	}
}

// TestGroupBackoffGrows: the waits between restarts double up to Max and start again from
// Initial after a Run that had been ready for ResetAfter.
func TestGroupBackoffGrows(t *testing.T) {
	g := NewGroup(slog.New(slog.DiscardHandler), GroupConfig{
		ReadyTimeout: time.Second, StopTimeout: time.Second,
		Restart: Backoff{Initial: time.Second, Max: 4 * time.Second, ResetAfter: time.Minute},
	})
	t.Cleanup(func() { _ = g.Stop() })
	clk := newFakeClock(g, 6)
	runs, readies := &counter{}, &counter{}
	release := make(chan struct{})
	c := Func{N: "loop", R: func(ctx context.Context) error {
		n := runs.add()
		if n == 5 { // the fifth Run is ready until the test has advanced the clock
			select {
			case <-release:
			case <-ctx.Done():
				return nil
			}
		}
		return fmt.Errorf("failure %d", n)
	}, Ready: func(ctx context.Context) error {
		if readies.add() != 5 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	if err := g.Start(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	waitGroupState(t, g, "loop", 5*time.Second, func(s State) bool { return s.State == "ready" && s.Restarts == 4 })
	clk.advance(time.Minute)
	close(release)
	clk.waitFor(t, 6)
	want := []time.Duration{1, 2, 4, 4, 1, 2}
	for i := range want {
		want[i] *= time.Second
	}
	if diff := cmp.Diff(want, clk.waits()); diff != "" {
		t.Errorf("backoff waits (-want +got)\n%s", diff)
	}
	// The seventh failure asks for a wait that the clock never lets pass.
	st := waitGroupState(t, g, "loop", 5*time.Second, func(s State) bool { return s.Restarts == 7 })
	if !st.Degraded() || st.Error != "failed to start: failure 7" {
		t.Errorf("state %+v, want degraded with the last failure", st)
	}
	noFailure(t, g)
}

// TestGroupCrashLoopingChild: a non-critical component backed by a real process that keeps
// exiting leaves the group running, is degraded with its restarts and error, and is ready
// again once the program is fixed.
func TestGroupCrashLoopingChild(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "run.sh")
	up := filepath.Join(dir, "up")
	writeScript := func(body string) {
		t.Helper()
		tmp := script + ".tmp"
		if err := os.WriteFile(tmp, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, script); err != nil {
			t.Fatal(err)
		}
	}
	writeScript("echo broken; exit 3\n")
	child := NewChild(ChildConfig{
		Name: "metrics-store", Path: "/bin/sh", Args: []string{script}, LogFile: filepath.Join(dir, "child.log"),
		MaxRestarts: 1,
		Ready: func(context.Context) error {
			_, err := os.Stat(up)
			return err
		},
	}, slog.New(slog.DiscardHandler))
	g := NewGroup(slog.New(slog.DiscardHandler), GroupConfig{
		ReadyTimeout: 20 * time.Second, StopTimeout: 5 * time.Second,
		Restart: Backoff{Initial: 10 * time.Millisecond, Max: 20 * time.Millisecond},
	})
	t.Cleanup(func() { _ = g.Stop() })
	critical := &fake{name: "datastore", critical: true, rec: &recorder{}}
	if err := g.Start(context.Background(), critical); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background(), child); err != nil {
		t.Fatalf("Start = %v, want nil for a non-critical component", err)
	}
	st := waitGroupState(t, g, "metrics-store", 20*time.Second, func(s State) bool { return s.Restarts >= 2 })
	if !st.Degraded() || !strings.Contains(st.Error, "exit status 3") {
		t.Errorf("state %+v, want degraded with the program's exit status", st)
	}
	noFailure(t, g)
	if s := g.States()[0]; s.State != "ready" {
		t.Errorf("the critical component is %+v, want it left running", s)
	}

	writeScript("touch " + up + "; exec sleep 100\n")
	st = waitGroupState(t, g, "metrics-store", 20*time.Second, func(s State) bool { return s.State == "ready" })
	if st.Restarts < 2 || st.Error != "" {
		t.Errorf("state %+v, want ready with its restarts counted", st)
	}
	if cs := child.State(); cs.State != "running" || cs.PID == 0 {
		t.Errorf("child state %+v, want running", cs)
	}
	noFailure(t, g)
	if err := g.Stop(); err != nil {
		t.Errorf("Stop = %v", err)
	}
	if cs := child.State(); cs.State != "stopped" {
		t.Errorf("child state after Stop %+v, want stopped", cs)
	}
}

// counter counts attempts across Runs.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) add() int { c.mu.Lock(); defer c.mu.Unlock(); c.n++; return c.n }
func (c *counter) get() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// blockRun counts its Runs and runs until ctx ends.
func blockRun(n *counter) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		n.add()
		<-ctx.Done()
		return nil
	}
}

// fakeClock replaces the group's clock: every wait is recorded and passes at once, until
// limit waits have been asked for; the others never pass.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	ws    []time.Duration
	limit int
}

func newFakeClock(g *Group, limit int) *fakeClock {
	c := &fakeClock{t: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), limit: limit}
	g.now, g.after = c.now, c.after
	return c
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func (c *fakeClock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ws) >= c.limit {
		return nil
	}
	c.ws = append(c.ws, d)
	c.t = c.t.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.t
	return ch
}

func (c *fakeClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.ws...)
}

func (c *fakeClock) waitFor(t *testing.T, n int) {
	t.Helper()
	testbin.Eventually(t, 5*time.Second, fmt.Sprintf("%d backoff waits", n), func() bool { return len(c.waits()) >= n })
}
