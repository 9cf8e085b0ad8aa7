package imagebuild

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
)

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLog logs to the test output under -v, else nowhere.
func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func errorIs(err, target error) bool { return err != nil && errors.Is(err, target) }
