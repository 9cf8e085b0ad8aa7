package testbin

import (
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 5*time.Second, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	ft := &fatalRecorder{T: t}
	func() {
		defer func() { _ = recover() }()
		Eventually(ft, 20*time.Millisecond, "never", func() bool { return false })
	}()
	if !ft.failed {
		t.Fatal("Eventually did not fail for a condition that never holds")
	}
}

// fatalRecorder records Fatalf instead of ending the test, so the failure path can be checked.
type fatalRecorder struct {
	*testing.T
	failed bool
}

func (f *fatalRecorder) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fatalRecorder) Helper()               {}
