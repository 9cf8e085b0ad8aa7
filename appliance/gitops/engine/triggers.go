package engine

import (
	"context"
	"sync"
)

// Trigger asks for a sync as soon as possible, re-applying every environment.
func (e *Engine) Trigger() {
	e.trigMu.Lock()
	e.force = true
	e.trigMu.Unlock()
	e.wake()
}

// TriggerApps asks for a sync as soon as possible that re-applies the environments (previews
// included) of the named apps, for example because one of them has a new build. The others are
// left for their next scheduled resync; a new commit of the repository re-applies everything
// anyway, and environments that are gone are removed either way.
func (e *Engine) TriggerApps(apps ...string) {
	if len(apps) == 0 {
		return
	}
	e.trigMu.Lock()
	if e.pending == nil {
		e.pending = map[string]bool{}
	}
	for _, a := range apps {
		e.pending[a] = true
	}
	e.trigMu.Unlock()
	e.wake()
}

// wake asks the loop for a sync; asks that arrive before it starts make one sync.
func (e *Engine) wake() { e.queue.Add(syncKey) }

// SyncNow asks for a sync and waits until one that started after the call has finished (or
// ctx ends). What the sync applies is what was asked for (Trigger, TriggerApps) and what is
// due; SyncNow itself forces nothing. It needs Run.
func (e *Engine) SyncNow(ctx context.Context) error {
	target := e.syncs.next()
	e.wake()
	return e.syncs.wait(ctx, target)
}

// syncCounter counts the loop's syncs so callers can wait for one.
type syncCounter struct {
	mu       sync.Mutex
	started  uint64
	finished uint64
	changed  chan struct{} // closed and replaced when a sync finishes
}

func newSyncCounter() *syncCounter { return &syncCounter{changed: make(chan struct{})} }

// next is the number of the next sync to start.
func (c *syncCounter) next() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started + 1
}

func (c *syncCounter) start() {
	c.mu.Lock()
	c.started++
	c.mu.Unlock()
}

func (c *syncCounter) finish() {
	c.mu.Lock()
	c.finished = c.started
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// wait returns once sync n has finished.
func (c *syncCounter) wait(ctx context.Context, n uint64) error {
	for {
		c.mu.Lock()
		done, ch := c.finished >= n, c.changed
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
