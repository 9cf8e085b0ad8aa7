package testbin

import (
	"fmt"
	"testing"
)

// recorder is a Skipper that records how the test would have ended.
type recorder struct{ skipped, failed string }

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestRequireReal(t *testing.T) {
	for _, tc := range []struct {
		env          string
		skip, failed string
	}{
		{"", "no busybox", ""},
		{"0", "no busybox", ""},
		{"1", "", "GLUEBOX_REQUIRE_REAL=1 and this test cannot run here: no busybox"},
	} {
		t.Run("GLUEBOX_REQUIRE_REAL="+tc.env, func(t *testing.T) {
			t.Setenv(RequireRealEnv, tc.env)
			var r recorder
			RequireReal(&r, "no busybox")
			if r.skipped != tc.skip || r.failed != tc.failed {
				t.Errorf("RequireReal skipped %q and failed %q, want %q and %q", r.skipped, r.failed, tc.skip, tc.failed)
			}
		})
	}
}
