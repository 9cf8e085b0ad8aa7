package registry

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// TestRouteDistributionLogsOnce: routing again (as a second server start in the same process
// does) moves distribution's lines to the new logger and logs each of them once.
func TestRouteDistributionLogsOnce(t *testing.T) {
	prev := distributionLogs.log.Load()
	t.Cleanup(func() { distributionLogs.log.Store(prev) })
	var first, second bytes.Buffer
	RouteDistributionLogs(slog.New(slog.NewTextHandler(&first, nil)))
	RouteDistributionLogs(slog.New(slog.NewTextHandler(&second, nil)))
	RouteDistributionLogs(slog.New(slog.NewTextHandler(&second, nil)))
	logrus.StandardLogger().Warn("storage driver is slow")

	if first.Len() != 0 {
		t.Errorf("the first logger still gets lines: %q", first.String())
	}
	if n := strings.Count(second.String(), "storage driver is slow"); n != 1 {
		t.Errorf("the line was logged %d times, want once:\n%s", n, second.String())
	}
	if !strings.Contains(second.String(), "level=WARN") || !strings.Contains(second.String(), "source=distribution") {
		t.Errorf("line = %q, want a WARN line with source=distribution", second.String())
	}
}
