package supervise

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff is the wait between restarts of a failed non-critical component: Initial after the
// first failure, doubling after each further one up to Max, and Initial again once the
// component had been ready for ResetAfter before it failed. The zero value means the defaults.
type Backoff struct {
	// Initial is the first wait (default 1 s).
	Initial time.Duration
	// Max caps the wait (default 1 min).
	Max time.Duration
	// ResetAfter is how long a component must have run ready for its next failure to count
	// as the first again (default 2 min).
	ResetAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = time.Minute
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = 2 * time.Minute
	}
	return b
}

// next returns the wait after prev (zero: none yet).
func (b Backoff) next(prev time.Duration) time.Duration {
	if prev <= 0 {
		return b.Initial
	}
	return min(2*prev, b.Max)
}

// keep runs the non-critical c until ctx ends, restarting it with backoff whenever it fails
// (its Run returns, or it does not become ready within the ready timeout). The outcome of the
// first attempt's readiness is sent on first. keep returns what the last Run returned once ctx
// ended, nil when that was during a backoff.
func (g *Group) keep(ctx context.Context, c Component, first chan<- error) error {
	name := c.Name()
	var delay time.Duration
	restarts := 0
	firstSent := false
	report := func(err error) {
		if !firstSent {
			first <- err
			firstSent = true
		}
	}
	for {
		ranFine, err := g.attempt(ctx, c, restarts, report)
		if ctx.Err() != nil {
			report(ctx.Err())
			return err
		}
		if ranFine {
			delay = 0
		}
		delay = g.cfg.Restart.next(delay)
		restarts++
		g.set(name, func(s *State) { s.State, s.Error, s.Restarts = "degraded", err.Error(), restarts })
		report(err)
		g.log.Warn("component failed; restarting it", "component", name, "err", err, "in", delay, "restarts", restarts)
		select {
		case <-ctx.Done():
			return nil
		case <-g.after(delay):
		}
	}
}

// attempt runs c once and returns when Run has returned: whether it had been ready for the
// backoff's ResetAfter, and why it failed (what Run returned, when ctx ended).
func (g *Group) attempt(ctx context.Context, c Component, restarts int, report func(error)) (ranFine bool, err error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(actx) }()

	rctx, rcancel := context.WithTimeout(actx, g.cfg.ReadyTimeout)
	readyErr := make(chan error, 1)
	go func() { readyErr <- c.WaitReady(rctx) }()
	select {
	case err = <-readyErr:
		rcancel()
	case err = <-runDone:
		rcancel()
		if ctx.Err() != nil {
			return false, err
		}
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		return false, fmt.Errorf("failed to start: %w", err)
	}
	if err != nil { // not ready: stop this Run before the next one starts
		if rctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("did not become ready within %s: %w", g.cfg.ReadyTimeout, err)
		} else {
			err = fmt.Errorf("did not become ready: %w", err)
		}
		cancel()
		runErr := <-runDone
		if ctx.Err() != nil {
			return false, runErr
		}
		return false, err
	}
	readyAt := g.now()
	g.set(c.Name(), func(s *State) { s.State, s.Error, s.Restarts = "ready", "", restarts })
	if restarts > 0 {
		g.log.Info("ready again", "component", c.Name(), "restarts", restarts)
	}
	report(nil)
	err = <-runDone
	if ctx.Err() != nil {
		return false, err
	}
	if err == nil {
		err = errors.New("stopped by itself")
	}
	return g.now().Sub(readyAt) >= g.cfg.Restart.ResetAfter, err
}
