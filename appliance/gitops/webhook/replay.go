package webhook

import (
	"container/list"
	"sync"
	"time"
)

// replayCache remembers delivery keys for a window, bounded in size. Entries are kept in
// the order they were first seen, which is also the order they expire in, so the oldest go
// first whether the window or the bound pushes them out.
//
// It stops forges' redeliveries and a captured request being sent again as is. It cannot stop
// a captured body sent with a new delivery ID (the signature does not cover headers); that
// costs one extra fetch of a repository that did not change, which the engine tolerates.
type replayCache struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	order  *list.List // of *replayEntry, oldest first
	seen   map[string]*list.Element
}

type replayEntry struct {
	key  string
	when time.Time
}

func newReplayCache(max int, window time.Duration, now func() time.Time) *replayCache {
	return &replayCache{max: max, window: window, now: now, order: list.New(), seen: map[string]*list.Element{}}
}

// add records key and reports whether it is new, i.e. not seen within the window.
func (c *replayCache) add(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		if now.Sub(e.Value.(*replayEntry).when) < c.window {
			break
		}
		c.remove(e)
	}
	if _, ok := c.seen[key]; ok {
		return false
	}
	for c.order.Len() >= c.max {
		c.remove(c.order.Front())
	}
	c.seen[key] = c.order.PushBack(&replayEntry{key: key, when: now})
	return true
}

func (c *replayCache) remove(e *list.Element) {
	delete(c.seen, e.Value.(*replayEntry).key)
	c.order.Remove(e)
}
