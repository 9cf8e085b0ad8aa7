package secretsbench

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gluebox/gluebox/appliance/secrets"
)

func BenchmarkSetParallel(b *testing.B) {
	st, err := secrets.Open(secrets.StoreOptions{Dir: b.TempDir()}, nil)
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
