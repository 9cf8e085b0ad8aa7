// Package secretsbench is the secret store's benchmark for `make bench` (group "secrets"): single
// and concurrent writes through the store's group commit, raw bbolt for comparison, and backup and
// verify of a 100 MB store. It uses only the store's exported API; only bench/ imports it.
package secretsbench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gluebox/gluebox/appliance/secrets"
)

// Benchmark sizes, chosen to finish in well under a minute on the 2-core reference VM.
const (
	benchSingle      = 300
	benchBatched     = 6000
	benchWriters     = 16
	benchValueSize   = 64
	benchStoreTarget = 100 << 20
	benchBigValue    = 96 << 10
)

// Run measures the store and prints one `name: value unit` line per figure to w. It works
// in a fresh directory under dir and removes it afterwards.
func Run(w io.Writer, dir string) error {
	work, err := os.MkdirTemp(dir, "secrets-bench-*")
	if err != nil {
		return fmt.Errorf("cannot create bench dir: %w", err)
	}
	defer os.RemoveAll(work)
	ctx := context.Background()
	st, err := secrets.Open(secrets.StoreOptions{Dir: filepath.Join(work, "store")}, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	val := make([]byte, benchValueSize)
	rand.Read(val)

	// Single writes: one writer, every write its own commit.
	lat := make([]time.Duration, 0, benchSingle)
	start := time.Now()
	for i := range benchSingle {
		t := time.Now()
		if _, err := st.Set(ctx, fmt.Sprintf("secret/single-%d", i%50), map[string][]byte{fmt.Sprintf("K%d", i): val}, "bench"); err != nil {
			return fmt.Errorf("cannot run single writes: %w", err)
		}
		lat = append(lat, time.Since(t))
	}
	el := time.Since(start)
	fmt.Fprintf(w, "secrets_single_writes: %.0f writes/s\n", float64(benchSingle)/el.Seconds())
	fmt.Fprintf(w, "secrets_single_write_p99: %.2f ms\n", ms(p99(lat)))

	// Batched writes: many concurrent writers share commits through the store's group commit.
	lats, el, err := concurrently(benchBatched, benchWriters, func(i int) error {
		_, err := st.Set(ctx, fmt.Sprintf("secret/batch-%d", i%500), map[string][]byte{fmt.Sprintf("K%d", i%20): val}, "bench")
		return err
	})
	if err != nil {
		return fmt.Errorf("cannot run batched writes: %w", err)
	}
	fmt.Fprintf(w, "secrets_batched_writes: %.0f writes/s\n", float64(benchBatched)/el.Seconds())
	fmt.Fprintf(w, "secrets_batched_write_p99: %.2f ms\n", ms(p99(lats)))
	fmt.Fprintf(w, "secrets_batched_writers: %d goroutines\n", benchWriters)

	// Raw bbolt, same shape, no sealing and no versions, through bbolt's own Batch.
	raw, err := bolt.Open(filepath.Join(work, "raw.db"), 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("cannot open raw bbolt: %w", err)
	}
	defer raw.Close()
	raw.MaxBatchDelay = 2 * time.Millisecond
	lats, el, err = concurrently(benchBatched, benchWriters, func(i int) error {
		return raw.Batch(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte(fmt.Sprintf("batch-%d", i%500)))
			if err != nil {
				return err
			}
			return b.Put([]byte(fmt.Sprintf("K%d", i%20)), val)
		})
	})
	if err != nil {
		return fmt.Errorf("cannot run raw bbolt writes: %w", err)
	}
	fmt.Fprintf(w, "bbolt_raw_batched_puts: %.0f puts/s\n", float64(benchBatched)/el.Seconds())
	fmt.Fprintf(w, "bbolt_raw_batched_put_p99: %.2f ms\n", ms(p99(lats)))

	// Snapshot + encrypt of a 100 MB store.
	big, err := secrets.Open(secrets.StoreOptions{Dir: filepath.Join(work, "big"), KeepVersions: 1}, nil)
	if err != nil {
		return err
	}
	defer big.Close()
	bigVal := make([]byte, benchBigValue)
	for i := 0; ; i++ {
		fi, err := os.Stat(big.DBPath())
		if err != nil {
			return err
		}
		if fi.Size() >= benchStoreTarget {
			break
		}
		vals := map[string][]byte{}
		for k := range 8 {
			rand.Read(bigVal)
			vals[fmt.Sprintf("FILE_%d", k)] = append([]byte(nil), bigVal...)
		}
		if _, err := big.Set(ctx, fmt.Sprintf("secret/big-%d", i), vals, "bench"); err != nil {
			return fmt.Errorf("cannot fill big store: %w", err)
		}
	}
	fi, _ := os.Stat(big.DBPath())
	bdir := filepath.Join(work, "backups")
	start = time.Now()
	m, err := big.Backup(ctx, bdir)
	if err != nil {
		return err
	}
	el = time.Since(start)
	fmt.Fprintf(w, "secrets_store_size: %.1f MB\n", float64(fi.Size())/1e6)
	fmt.Fprintf(w, "secrets_snapshot_encrypt_100mb: %.2f s\n", el.Seconds())
	fmt.Fprintf(w, "secrets_snapshot_encrypt_rate: %.0f MB/s\n", float64(m.Size)/1e6/el.Seconds())
	start = time.Now()
	if _, err := big.Verify(ctx, filepath.Join(bdir, m.File)); err != nil {
		return err
	}
	fmt.Fprintf(w, "secrets_snapshot_verify_100mb: %.2f s\n", time.Since(start).Seconds())
	return nil
}

// concurrently runs fn(0..n-1) on workers goroutines and returns each call's latency and the
// total time.
func concurrently(n, workers int, fn func(i int) error) ([]time.Duration, time.Duration, error) {
	lats := make([]time.Duration, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t := time.Now()
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lats[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	return lats, time.Since(start), firstErr
}

func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), lat...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*99+99)/100-1] // nearest rank
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
