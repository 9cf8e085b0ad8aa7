package secrets

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// TestRunBench runs the full benchmark only when asked (it writes a 100 MB store):
// GLUEBOX_SECRETS_BENCH=1 go test -run TestRunBench -v ./appliance/secrets/
func TestRunBench(t *testing.T) {
	if os.Getenv("GLUEBOX_SECRETS_BENCH") == "" {
		t.Skip("set GLUEBOX_SECRETS_BENCH=1 to run the store benchmark")
	}
	if err := RunBench(os.Stdout, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSetParallel(b *testing.B) {
	st, err := Open(StoreOptions{Dir: b.TempDir()}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	val := make([]byte, benchValueSize)
	b.SetParallelism(8)
	var n atomicCounter
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.next()
			if _, err := st.Set(b.Context(), fmt.Sprintf("secret/batch-%d", i%500), map[string][]byte{fmt.Sprintf("K%d", i%20): val}, "bench"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.n.Add(1) }
