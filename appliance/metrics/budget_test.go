package metrics

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestNextRetention(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name                string
		usage, budget       int64
		current, configured time.Duration
		want                time.Duration
	}{
		{"no budget", 1 << 40, 0, 5 * day, 30 * day, 30 * day},
		{"inside the budget", 60, 100, 30 * day, 30 * day, 30 * day},
		{"over 90%: shortened in proportion toward 70%", 100, 100, 30 * day, 30 * day, 21 * day},
		{"far over: never below a day", 1000, 1, 30 * day, 30 * day, day},
		{"already a day: stays", 1000, 1, day, 30 * day, day},
		{"just over: in proportion, whole hours", 91, 100, 2 * day, 30 * day, 36 * time.Hour},
		{"rounding would not shorten: a day less", 91, 100, 2*day + 30*time.Minute, 30 * day, 37 * time.Hour},
		{"well inside again: doubled", 40, 100, 3 * day, 30 * day, 6 * day},
		{"well inside: not beyond the configured", 10, 100, 20 * day, 30 * day, 30 * day},
		{"current beyond configured (config lowered)", 10, 100, 60 * day, 30 * day, 30 * day},
	}
	for _, tt := range tests {
		if got := NextRetention(tt.usage, tt.budget, tt.current, tt.configured); got != tt.want {
			t.Errorf("%s: NextRetention(%d, %d, %s, %s) = %s, want %s", tt.name, tt.usage, tt.budget, tt.current, tt.configured, got, tt.want)
		}
	}
}

// TestBudgetShortensRetentionAndDropsOldestSamples runs the real VictoriaMetrics: a sample
// three days old is queryable with the 30-day retention; once the data is over its budget the
// retention becomes a day, VictoriaMetrics restarts with it and the old sample is gone from
// queries (its parts are deleted in the background); a new instance on the same dir keeps the
// shortened retention.
func TestBudgetShortensRetentionAndDropsOldestSamples(t *testing.T) {
	m := newTestMetrics(t, Config{DiskBudget: 1 << 40})
	old := time.Now().Add(-72 * time.Hour).UnixMilli()
	resp, err := http.Post(m.URL()+"/api/v1/import/prometheus", "text/plain", strings.NewReader(fmt.Sprintf("gluebox_test_old 7 %d\n", old)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	exported := func() (string, error) {
		q := url.Values{"match[]": {"gluebox_test_old"}, "start": {fmt.Sprint(time.Now().Add(-96 * time.Hour).Unix())}}
		resp, err := http.Get(m.URL() + "/api/v1/export?" + q.Encode())
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	eventually(t, 20*time.Second, "the 3-day-old sample is queryable", func() error {
		_, _ = http.Get(m.URL() + "/internal/force_flush")
		out, err := exported()
		if err != nil || !strings.Contains(out, `"values":[7]`) {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	pid := m.State().PID

	m.checkBudget(1) // the data is far over a 1-byte budget
	eventually(t, 40*time.Second, "VictoriaMetrics restarted with a 1-day retention", func() error {
		st := m.State()
		if m.EffectiveRetention() != MinRetention || st.PID == pid || st.PID == 0 || st.State != "running" {
			return fmt.Errorf("retention %s, state %+v (old pid %d)", m.EffectiveRetention(), st, pid)
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
		if err != nil || !strings.Contains(string(cmd), "-retentionPeriod=1d") {
			return fmt.Errorf("command line %q: %v", cmd, err)
		}
		return nil
	})
	eventually(t, 20*time.Second, "the old sample is dropped", func() error {
		out, err := exported()
		if err != nil || strings.Contains(out, "gluebox_test_old") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	if b, err := os.ReadFile(m.cfg.retentionFile()); err != nil || strings.TrimSpace(string(b)) != "24h0m0s" {
		t.Fatalf("kept retention %q, %v", b, err)
	}
	m2, err := New(m.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if m2.EffectiveRetention() != MinRetention {
		t.Fatalf("a new instance runs with %s, want the kept 24h", m2.EffectiveRetention())
	}
}
