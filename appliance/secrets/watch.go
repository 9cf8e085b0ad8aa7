// Subscriptions: consumers (kubesync) learn which paths changed without polling.

package secrets

import (
	"maps"
	"slices"
	"sync"
)

// Subscription tells one consumer which paths changed. Changes are coalesced, so a slow
// consumer never blocks writers and never misses that something changed.
type Subscription struct {
	s     *Store
	c     chan struct{}
	mu    sync.Mutex
	paths map[string]struct{}
	all   bool
}

// Subscribe returns a Subscription; call Close when done.
func (s *Store) Subscribe() *Subscription {
	sub := &Subscription{s: s, c: make(chan struct{}, 1), paths: map[string]struct{}{}}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	select {
	case <-s.closed:
		close(sub.c)
	default:
		s.subs[sub] = struct{}{}
	}
	return sub
}

// C receives a value when there are changes to Take; it is closed when the store closes.
func (sub *Subscription) C() <-chan struct{} { return sub.c }

// Take returns the paths changed since the last Take; all reports that everything may have
// changed (a restore).
func (sub *Subscription) Take() (paths []string, all bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	paths, all = slices.Sorted(maps.Keys(sub.paths)), sub.all
	sub.paths, sub.all = map[string]struct{}{}, false
	return paths, all
}

// Close stops the subscription.
func (sub *Subscription) Close() {
	sub.s.subsMu.Lock()
	defer sub.s.subsMu.Unlock()
	if _, ok := sub.s.subs[sub]; ok {
		delete(sub.s.subs, sub)
		close(sub.c)
	}
}

func (s *Store) notify(paths []string, all bool) {
	if len(paths) == 0 && !all {
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for sub := range s.subs {
		sub.mu.Lock()
		for _, p := range paths {
			sub.paths[p] = struct{}{}
		}
		sub.all = sub.all || all
		sub.mu.Unlock()
		select {
		case sub.c <- struct{}{}:
		default:
		}
	}
}
