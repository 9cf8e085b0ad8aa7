package imagebuild

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/supervise"
)

// LazyDaemon runs buildkitd only once the first build starts, so a node that builds nothing
// does not pay its memory. It is the supervised component; the Daemon it wraps is the child
// whose state `gluebox status` shows.
type LazyDaemon struct {
	d    *Daemon
	once sync.Once
	need chan struct{}
}

var _ supervise.Component = (*LazyDaemon)(nil)

// NewLazyDaemon wraps d; d runs once Ensure is first called.
func NewLazyDaemon(d *Daemon) *LazyDaemon { return &LazyDaemon{d: d, need: make(chan struct{})} }

// Name is the wrapped daemon's: one component, one name.
func (l *LazyDaemon) Name() string { return l.d.Name() }

// Run waits for the first build, then runs buildkitd until ctx ends.
func (l *LazyDaemon) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-l.need:
	}
	return l.d.Run(ctx)
}

// WaitReady is at once: buildkitd's readiness is waited for by the builds that need it.
func (l *LazyDaemon) WaitReady(context.Context) error { return nil }

// StopTimeout bounds buildkitd's stop.
func (l *LazyDaemon) StopTimeout() time.Duration { return l.d.StopTimeout() }

// Ensure starts buildkitd if it is not running yet and waits until it answers, saying so in
// the build log w the first time.
func (l *LazyDaemon) Ensure(ctx context.Context, w io.Writer) error {
	started := false
	l.once.Do(func() { close(l.need); started = true })
	if started {
		fmt.Fprintln(w, "starting buildkitd (first build since gluebox started)")
	}
	if err := l.d.WaitReady(ctx); err != nil {
		return fmt.Errorf("build: buildkitd is not ready: %w", err)
	}
	return nil
}
