package supervise

import (
	"context"
	"sync"
)

// Readiness is a component's readiness for one Run at a time: Run calls Set once it serves and
// defers Clear, so that a Run the Group starts again after a failure is not taken for ready
// before it serves again. WaitReady implementations call Wait. The zero value is not ready.
type Readiness struct {
	mu  sync.Mutex
	ch  chan struct{}
	set bool
}

func (r *Readiness) chLocked() chan struct{} {
	if r.ch == nil {
		r.ch = make(chan struct{})
	}
	return r.ch
}

// Set marks the component ready; a second Set does nothing.
func (r *Readiness) Set() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.set {
		close(r.chLocked())
		r.set = true
	}
}

// Clear marks the component not ready again, for its next Run.
func (r *Readiness) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set {
		r.ch, r.set = make(chan struct{}), false
	}
}

// C returns a channel closed once the component is ready (it is not closed by a Set after a
// later Clear: call C again then).
func (r *Readiness) C() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chLocked()
}

// IsSet reports whether the component is ready now.
func (r *Readiness) IsSet() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.set
}

// Wait blocks until the component is ready (nil) or ctx ends (ctx's error); with ctx already
// ended, it says whether the component is ready now.
func (r *Readiness) Wait(ctx context.Context) error {
	if r.IsSet() {
		return nil
	}
	select {
	case <-r.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
