package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Component is one part of a gluebox server as the Group sees it.
type Component interface {
	// Name names the component in logs, errors and `gluebox status`; it is unique in a Group.
	Name() string
	// Run runs the component until ctx ends and returns nil then; an error, or nil before ctx
	// ends, means it failed. The Group calls Run again after a non-critical component failed,
	// so Run must work when called again after it returned.
	Run(ctx context.Context) error
	// WaitReady blocks until the component serves (nil), ctx ends, or it knows it never will.
	// It speaks of the current Run: after a Run returned, WaitReady waits for the next one.
	WaitReady(ctx context.Context) error
}

// Critical is implemented by components whose failure ends the process: the datastore, the
// control plane, containerd and the kubelet, without which the node is not a node. Every other
// component is non-critical, and does not implement Critical (or returns false): when it fails
// the Group restarts it with backoff and shows it as degraded, and the node keeps running.
// Non-critical is the default so that a new component cannot take the node down by mistake.
type Critical interface {
	Critical() bool
}

// IsCritical reports whether c says it is critical.
func IsCritical(c Component) bool {
	cc, ok := c.(Critical)
	return ok && cc.Critical()
}

// StopBounder is implemented by components that need another stop bound than the group's.
type StopBounder interface {
	StopTimeout() time.Duration
}

// Func adapts functions to a Component, for small components written inline in the wiring.
type Func struct {
	N     string
	R     func(ctx context.Context) error
	Ready func(ctx context.Context) error // nil: ready once started
	Crit  bool                            // the component is Critical
}

var (
	_ Component = Func{}
	_ Critical  = Func{}
)

func (f Func) Name() string                  { return f.N }
func (f Func) Run(ctx context.Context) error { return f.R(ctx) }
func (f Func) Critical() bool                { return f.Crit }
func (f Func) WaitReady(ctx context.Context) error {
	if f.Ready == nil {
		return nil
	}
	return f.Ready(ctx)
}

// GroupConfig configures a Group. The zero value means the defaults below.
type GroupConfig struct {
	// ReadyTimeout bounds how long a component may take to become ready (default 3 min): a
	// critical one then fails Start, a non-critical one is degraded and retried.
	ReadyTimeout time.Duration
	// StopTimeout bounds each component's stop (default 30 s); see also StopBounder.
	StopTimeout time.Duration
	// Restart is the backoff between restarts of a failed non-critical component.
	Restart Backoff
}

func (c GroupConfig) withDefaults() GroupConfig {
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 3 * time.Minute
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 30 * time.Second
	}
	c.Restart = c.Restart.withDefaults()
	return c
}

// Group starts components in order, stops them in reverse, restarts failed non-critical ones
// and reports the failure of a critical one on Failed.
type Group struct {
	log     *slog.Logger
	cfg     GroupConfig
	running []*running
	names   map[string]bool
	failed  chan error
	// after and now are the clock of restarts (tests replace them).
	after func(time.Duration) <-chan time.Time
	now   func() time.Time

	mu     sync.Mutex
	states []State
}

// State is a component's state as `gluebox status` shows it.
type State struct {
	Name string `json:"name"`
	// State is one of starting, ready, degraded (a non-critical component that failed and is
	// being restarted), stopping, stopped, failed (a critical one).
	State    string    `json:"state"`
	Critical bool      `json:"critical,omitempty"`
	Since    time.Time `json:"since"`
	// Error is why the component is degraded, failed or stopped with an error.
	Error string `json:"error,omitempty"`
	// Restarts counts the times the Group started the component again after it failed.
	Restarts int `json:"restarts,omitempty"`
}

// Degraded reports whether the component failed and is being restarted.
func (s State) Degraded() bool { return s.State == "degraded" }

type running struct {
	c      Component
	cancel context.CancelFunc
	done   chan error
}

// NewGroup returns a Group configured by cfg.
func NewGroup(log *slog.Logger, cfg GroupConfig) *Group {
	return &Group{
		log: log, cfg: cfg.withDefaults(), names: map[string]bool{}, failed: make(chan error, 64),
		after: time.After, now: time.Now,
	}
}

func (g *Group) set(name string, f func(*State)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.states {
		if g.states[i].Name == name {
			f(&g.states[i])
			g.states[i].Since = g.now()
			return
		}
	}
	st := State{Name: name}
	f(&st)
	st.Since = g.now()
	g.states = append(g.states, st)
}

func (g *Group) setState(name, state string, err error) {
	g.set(name, func(s *State) {
		s.State, s.Error = state, ""
		if err != nil {
			s.Error = err.Error()
		}
	})
}

// States returns the state of every component the group has started, in start order.
func (g *Group) States() []State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]State(nil), g.states...)
}

// Start runs c and waits until it is ready. A critical component that fails to become ready
// is stopped again and Start returns an error saying which and why; components started
// earlier keep running (call Stop). A non-critical one that fails is marked degraded and
// restarted in the background, and Start returns nil: the boot goes on without it. Start
// refuses a component whose name another one has.
func (g *Group) Start(ctx context.Context, c Component) error {
	name := c.Name()
	if name == "" {
		return errors.New("cannot start a component without a name")
	}
	if g.names[name] {
		return fmt.Errorf("cannot start %s: another component has the same name; give each its own", name)
	}
	g.names[name] = true
	critical := IsCritical(c)
	g.set(name, func(s *State) { s.State, s.Critical = "starting", critical })
	if critical {
		return g.startCritical(ctx, c)
	}
	return g.startKept(ctx, c)
}

func (g *Group) startCritical(ctx context.Context, c Component) error {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	started := time.Now()
	var readyOnce atomic.Bool // failures before ready are Start's to report, not Failed's
	go func() {
		err := c.Run(cctx)
		if err != nil && cctx.Err() == nil && readyOnce.Load() {
			g.setState(c.Name(), "failed", err)
			g.fail(c, err)
		}
		r.done <- err
	}()
	rctx, rcancel := context.WithTimeout(ctx, g.cfg.ReadyTimeout)
	defer rcancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- c.WaitReady(rctx) }()
	select {
	case err := <-readyErr:
		if err != nil {
			g.stopOne(r)
			g.setState(c.Name(), "failed", err)
			if rctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%s did not become ready within %s: %w", c.Name(), g.cfg.ReadyTimeout, err)
			}
			return fmt.Errorf("%s did not become ready: %w", c.Name(), err)
		}
	case err := <-r.done:
		cancel()
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		g.setState(c.Name(), "failed", err)
		return fmt.Errorf("%s failed to start: %w", c.Name(), err)
	}
	readyOnce.Store(true)
	select { // Run may have failed between WaitReady and the Store above
	case err := <-r.done:
		r.done <- err // stopOne reads it later
		if err == nil {
			err = errors.New("stopped right after it became ready")
		}
		g.fail(c, err)
	default:
	}
	g.running = append(g.running, r)
	g.setState(c.Name(), "ready", nil)
	g.log.Info("ready", "component", c.Name(), "took", time.Since(started).Round(time.Millisecond))
	return nil
}

func (g *Group) fail(c Component, err error) {
	select {
	case g.failed <- fmt.Errorf("%s: %w", c.Name(), err):
	default:
	}
}

// startKept runs a non-critical component under keep and waits for the first attempt.
func (g *Group) startKept(ctx context.Context, c Component) error {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	started := time.Now()
	first := make(chan error, 1)
	go func() { r.done <- g.keep(cctx, c, first) }()
	g.running = append(g.running, r)
	select {
	case err := <-first:
		if err != nil {
			g.log.Warn("not ready; the boot goes on and it is retried in the background", "component", c.Name(), "err", err)
			return nil
		}
		g.log.Info("ready", "component", c.Name(), "took", time.Since(started).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s did not become ready: %w", c.Name(), ctx.Err())
	}
}

// Failed delivers the error of a critical component whose Run fails while the group runs.
func (g *Group) Failed() <-chan error { return g.failed }

// Stop stops every started component in reverse order, each within the stop timeout, and
// returns the errors they reported.
func (g *Group) Stop() error {
	var errs []error
	for i := len(g.running) - 1; i >= 0; i-- {
		if err := g.stopOne(g.running[i]); err != nil {
			errs = append(errs, err)
		}
	}
	g.running = nil
	return errors.Join(errs...)
}

func (g *Group) stopOne(r *running) error {
	started := time.Now()
	bound := g.cfg.StopTimeout
	if sb, ok := r.c.(StopBounder); ok && sb.StopTimeout() > 0 && sb.StopTimeout() < bound {
		bound = sb.StopTimeout()
	}
	g.setState(r.c.Name(), "stopping", nil)
	r.cancel()
	select {
	case err := <-r.done:
		g.setState(r.c.Name(), "stopped", err)
		g.log.Info("stopped", "component", r.c.Name(), "took", time.Since(started).Round(time.Millisecond))
		if err != nil {
			return fmt.Errorf("%s: %w", r.c.Name(), err)
		}
		return nil
	case <-time.After(bound):
		g.log.Warn("did not stop in time, leaving it", "component", r.c.Name(), "timeout", bound)
		g.setState(r.c.Name(), "stopped", fmt.Errorf("did not stop within %s", bound))
		return nil
	}
}
