package platform

import (
	"bytes"
	"context"
	"sync"
)

// Publisher hands the platform.yaml of the newest synced commit to its subscribers: the GitOps
// engine publishes what each sync read, the app follower and the alerting rules subscribe.
// Subscribers are called only when the content differs from the last published (the first
// Publish always reaches them), in the publisher's goroutine, in the order they subscribed.
//
// Lifecycle: NewPublisher in the wiring; subscribers call Subscribe in their constructors,
// before the engine runs. Safe for concurrent use.
type Publisher struct {
	mu   sync.Mutex
	subs []func(ctx context.Context, raw []byte)
	last []byte
	seen bool
	// pub serialises Publish so subscribers see contents in order.
	pub sync.Mutex
}

// NewPublisher returns a Publisher with no subscribers.
func NewPublisher() *Publisher { return &Publisher{} }

// Subscribe adds f, called with platform.yaml's content (nil when the file is absent) on every
// change. A subscriber that joins after a Publish gets the last content at once.
func (p *Publisher) Subscribe(f func(ctx context.Context, raw []byte)) {
	p.pub.Lock()
	defer p.pub.Unlock()
	p.mu.Lock()
	p.subs = append(p.subs, f)
	last, seen := p.last, p.seen
	p.mu.Unlock()
	if seen {
		f(context.Background(), last)
	}
}

// Publish hands raw (platform.yaml's content, nil when absent) to every subscriber unless it is
// the content last published.
func (p *Publisher) Publish(ctx context.Context, raw []byte) {
	p.pub.Lock()
	defer p.pub.Unlock()
	p.mu.Lock()
	if p.seen && bytes.Equal(p.last, raw) && (p.last == nil) == (raw == nil) {
		p.mu.Unlock()
		return
	}
	p.last, p.seen = bytes.Clone(raw), true
	subs := append([]func(context.Context, []byte){}, p.subs...)
	p.mu.Unlock()
	for _, f := range subs {
		f(ctx, raw)
	}
}
