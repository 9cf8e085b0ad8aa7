package imagebuild

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/logs"
)

// memSink stands in for the logs store.
type memSink struct {
	mu     sync.Mutex
	lines  []logs.Line
	stream []string
}

func (m *memSink) Ingest(_ context.Context, lines []logs.Line, streamFields ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, lines...)
	m.stream = streamFields
	return nil
}

type apps []string

func (a apps) AppNames() []string { return a }

// newTestService is a Service whose queue runs fake builds (buildkitd is never started).
func newTestService(t *testing.T, sink LogSink) (*Service, *testQueue) {
	t.Helper()
	s := &Service{counts: &finishCounts{}, sink: sink, log: discardLog()}
	tq := newTestQueue(t, "", QueueConfig{}, WithOnFinish(s.finished))
	s.queue = tq.Queue
	return s, tq
}

func TestServiceShipsLogsAndCountsBuilds(t *testing.T) {
	sink := &memSink{}
	s, tq := newTestService(t, sink)
	r := tq.submit(t, "shop", "main", "one")
	tq.fake.waitStarted(t, "one")
	tq.fake.step(t, "one", fakeStep{line: "RUN make"})
	tq.fake.step(t, "one", fakeStep{err: context.DeadlineExceeded})
	tq.wait(t, r.ID)

	waitFor(t, "the log in the sink", func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.lines) >= 3
	})
	sink.mu.Lock()
	var l logs.Line
	for _, x := range sink.lines {
		if x.Msg == "RUN make" {
			l = x
		}
	}
	if l.Msg != "RUN make" || l.Fields["build"] != r.ID || l.Fields["status"] != "failed" || l.Fields["app"] != "shop" || strings.Join(sink.stream, ",") != "source,app" {
		t.Errorf("shipped line %+v, stream %v", l, sink.stream)
	}
	sink.mu.Unlock()

	want := `
# HELP gluebox_build_failures_total Builds that failed since gluebox started.
# TYPE gluebox_build_failures_total counter
gluebox_build_failures_total{app="blog"} 0
gluebox_build_failures_total{app="shop"} 1
# HELP gluebox_builds_total Builds that ended since gluebox started, by final status.
# TYPE gluebox_builds_total counter
gluebox_builds_total{app="shop",status="failed"} 1
`
	waitFor(t, "the build counted", func() bool {
		return testutil.CollectAndCompare(s.Collector(apps{"blog", "shop"}), strings.NewReader(want), "gluebox_builds_total", "gluebox_build_failures_total") == nil
	})
	if err := testutil.CollectAndCompare(s.Collector(nil), strings.NewReader(`
# HELP gluebox_builds_in_progress Builds queued or running.
# TYPE gluebox_builds_in_progress gauge
gluebox_builds_in_progress{status="queued"} 0
gluebox_builds_in_progress{status="running"} 0
`), "gluebox_builds_in_progress"); err != nil {
		t.Error(err)
	}
	var _ prometheus.Collector = s.Collector(nil)
}

// waitFor polls cond until it holds, failing after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testbin.Eventually(t, 5*time.Second, what, cond)
}
