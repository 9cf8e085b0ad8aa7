package logs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestShipperDropsOldestWhenFull(t *testing.T) {
	var out bytes.Buffer
	s := NewShipper(slog.NewTextHandler(&out, nil), 3)
	log := slog.New(s).With("component", "test")
	for i := 0; i < 5; i++ {
		log.Info(fmt.Sprintf("line %d", i), "n", i)
	}
	if s.Dropped() != 2 {
		t.Fatalf("dropped %d, want 2", s.Dropped())
	}
	if got := strings.Count(out.String(), "\n"); got != 5 {
		t.Fatalf("the next handler saw %d lines, want all 5", got)
	}
	b := s.q.take(10)
	if len(b) != 3 || b[0].Msg != "line 2" || b[0].Fields["component"] != "test" || b[0].Fields["n"] != "2" || b[0].Fields["level"] != "INFO" {
		t.Fatalf("queued %+v", b)
	}
}

func TestShipperShipsToTheStore(t *testing.T) {
	l := newTestLogs(t)
	s := NewShipper(slog.DiscardHandler, 0)
	log := slog.New(s).WithGroup("g").With("component", "shipper-test")
	marker := fmt.Sprintf("shipped-%d", time.Now().UnixNano())
	log.Warn(marker, "k", "v")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, l.Client(), 100*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	eventually(t, 30*time.Second, "the shipped line", func() error {
		lines, err := l.Client().Query(context.Background(), `source:=gluebox AND "`+marker+`"`, 10, time.Time{}, time.Time{})
		if err != nil {
			return err
		}
		if len(lines) != 1 || lines[0].Fields["g.component"] != "shipper-test" || lines[0].Fields["level"] != "WARN" {
			return fmt.Errorf("got %+v", lines)
		}
		return nil
	})
}
