package registry

import (
	"os"
	"testing"
)

// TestBench runs RunBench when GLUEBOX_BENCH=1 (`make bench`), never as a timed test:
//
//	GLUEBOX_BENCH=1 go test ./appliance/registry -run TestBench -v
func TestBench(t *testing.T) {
	if os.Getenv("GLUEBOX_BENCH") != "1" {
		t.Skip("set GLUEBOX_BENCH=1 to run the registry benchmark")
	}
	dir := os.Getenv("GLUEBOX_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := RunBench(os.Stdout, dir); err != nil {
		t.Fatal(err)
	}
}
