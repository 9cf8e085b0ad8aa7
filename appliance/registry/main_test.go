package registry

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain plays main's part: distribution's internal logrus output goes to slog (discarded
// unless -v, where warnings show).
func TestMain(m *testing.M) {
	h := slog.DiscardHandler
	for _, a := range os.Args {
		if a == "-test.v=true" || a == "-test.v" {
			h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
		}
	}
	RouteDistributionLogs(slog.New(h))
	os.Exit(m.Run())
}
