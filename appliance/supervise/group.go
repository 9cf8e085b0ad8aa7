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
	// Name names the component in logs and errors.
	Name() string
	// Run runs the component until ctx ends and returns nil then; an error means it failed.
	Run(ctx context.Context) error
	// WaitReady blocks until the component serves, ctx ends, or it knows it never will.
	WaitReady(ctx context.Context) error
}

// StopBounder is implemented by components that need another stop bound than the group's.
type StopBounder interface {
	StopTimeout() time.Duration
}

// Func adapts functions to a Component.
type Func struct {
	N     string
	R     func(ctx context.Context) error
	Ready func(ctx context.Context) error
}

func (f Func) Name() string                  { return f.N }
func (f Func) Run(ctx context.Context) error { return f.R(ctx) }
func (f Func) WaitReady(ctx context.Context) error {
	if f.Ready == nil {
		return nil
	}
	return f.Ready(ctx)
}

// Group starts components in order and stops them in reverse.
type Group struct {
	log          *slog.Logger
	readyTimeout time.Duration
	stopTimeout  time.Duration
	running      []*running
	failed       chan error

	mu     sync.Mutex
	states []State
}

func (g *Group) set(name, state string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := State{Name: name, State: state, Since: time.Now()}
	if err != nil {
		st.Error = err.Error()
	}
	for i := range g.states {
		if g.states[i].Name == name {
			g.states[i] = st
			return
		}
	}
	g.states = append(g.states, st)
}

// States returns the state of every component the group has started, in start order.
func (g *Group) States() []State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]State(nil), g.states...)
}

// State is a component's state as `gluebox status` shows it.
type State struct {
	Name  string    `json:"name"`
	State string    `json:"state"` // starting, ready, stopping, stopped, failed
	Since time.Time `json:"since"`
	Error string    `json:"error,omitempty"`
}

type running struct {
	c      Component
	cancel context.CancelFunc
	done   chan error
}

// NewGroup returns a Group. readyTimeout bounds each component's start; stopTimeout each stop.
func NewGroup(log *slog.Logger, readyTimeout, stopTimeout time.Duration) *Group {
	return &Group{log: log, readyTimeout: readyTimeout, stopTimeout: stopTimeout, failed: make(chan error, 64)}
}

// Start runs c and waits until it is ready. On failure, c is stopped again and the error says
// which component failed and why; components started earlier keep running (call Stop).
func (g *Group) Start(ctx context.Context, c Component) error {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	started := time.Now()
	g.set(c.Name(), "starting", nil)
	var readyOnce atomic.Bool // failures before ready are Start's to report, not Failed's
	go func() {
		err := c.Run(cctx)
		if err != nil && cctx.Err() == nil && readyOnce.Load() {
			g.set(c.Name(), "failed", err)
			select {
			case g.failed <- fmt.Errorf("%s: %w", c.Name(), err):
			default:
			}
		}
		r.done <- err
	}()
	rctx, rcancel := context.WithTimeout(ctx, g.readyTimeout)
	defer rcancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- c.WaitReady(rctx) }()
	select {
	case err := <-readyErr:
		if err != nil {
			g.stopOne(r)
			g.set(c.Name(), "failed", err)
			if rctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%s did not become ready within %s: %w", c.Name(), g.readyTimeout, err)
			}
			return fmt.Errorf("%s did not become ready: %w", c.Name(), err)
		}
	case err := <-r.done:
		cancel()
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		g.set(c.Name(), "failed", err)
		return fmt.Errorf("%s failed to start: %w", c.Name(), err)
	}
	readyOnce.Store(true)
	select { // Run may have failed between WaitReady and the Store above
	case err := <-r.done:
		r.done <- err // stopOne reads it later
		if err == nil {
			err = errors.New("stopped right after it became ready")
		}
		select {
		case g.failed <- fmt.Errorf("%s: %w", c.Name(), err):
		default:
		}
	default:
	}
	g.running = append(g.running, r)
	g.set(c.Name(), "ready", nil)
	g.log.Info("ready", "component", c.Name(), "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// Failed delivers the error of any component whose Run fails while the group runs.
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
	bound := g.stopTimeout
	if sb, ok := r.c.(StopBounder); ok && sb.StopTimeout() > 0 && sb.StopTimeout() < bound {
		bound = sb.StopTimeout()
	}
	g.set(r.c.Name(), "stopping", nil)
	r.cancel()
	select {
	case err := <-r.done:
		g.set(r.c.Name(), "stopped", err)
		g.log.Info("stopped", "component", r.c.Name(), "took", time.Since(started).Round(time.Millisecond))
		if err != nil {
			return fmt.Errorf("%s: %w", r.c.Name(), err)
		}
		return nil
	case <-time.After(bound):
		g.log.Warn("did not stop in time, leaving it", "component", r.c.Name(), "timeout", bound)
		g.set(r.c.Name(), "stopped", fmt.Errorf("did not stop within %s", bound))
		return nil
	}
}
