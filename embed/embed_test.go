package embed

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// mappedBytes returns the resident size of the mapping that holds addr, from /proc/self/smaps.
func mappedBytes(t *testing.T, addr uintptr) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatalf("cannot read /proc/self/smaps (gluebox runs on Linux only): %v", err)
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && len(f) >= 5 {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 == nil && err2 == nil {
				in = uint64(addr) >= l && uint64(addr) < h
				continue
			}
		}
		if in && f[0] == "Rss:" && len(f) >= 2 {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("bad smaps line %q", line)
			}
			return kb << 10
		}
	}
	t.Fatalf("no mapping holds address %#x", addr)
	return 0
}

func TestReleaseBundleDropsItsPagesAndKeepsItsBytes(t *testing.T) {
	data := Bundle()
	if len(data) < 16*os.Getpagesize() {
		t.Fatalf("bundle is only %d bytes", len(data))
	}
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	check := func(when string) {
		t.Helper()
		sum := sha256.Sum256(data) // reads, and so maps, every page
		if got := hex.EncodeToString(sum[:]); got != BundleSHA256() {
			t.Fatalf("%s: bundle hash %s, want %s", when, got, BundleSHA256())
		}
	}
	check("before release")
	before := mappedBytes(t, addr)
	if err := ReleaseBundle(); err != nil {
		t.Fatal(err)
	}
	after := mappedBytes(t, addr)
	if drop := before - after; drop < int64(len(data))-int64(4*os.Getpagesize()) {
		t.Errorf("resident size of the bundle's mapping went from %d to %d bytes; want a drop of about %d", before, after, len(data))
	}
	// The bytes come back from the executable, unchanged.
	check("after release")
	if err := ReleaseBundle(); err != nil { // twice is harmless
		t.Fatal(err)
	}
}

func TestWholePagesLeavesSharedEdgePagesAlone(t *testing.T) {
	for _, c := range []struct {
		start  uintptr
		n      int
		lo, hi int
	}{
		{0x10000, 3 * 4096, 0, 3 * 4096},                // aligned: every page
		{0x10010, 3 * 4096, 4096 - 0x10, 3*4096 - 0x10}, // both edges shared: the two whole pages between
		{0x10010, 4096, 0, 0},                           // no whole page
		{0x10000, 4095, 0, 0},                           // less than a page
		{0x10ff0, 4096 + 0x20, 0x10, 0x10 + 4096},       // one whole page
		{0x10000, 0, 0, 0},
	} {
		lo, hi := wholePages(c.start, c.n, 4096)
		if lo != c.lo || hi != c.hi {
			t.Errorf("wholePages(%#x, %d) = [%#x, %#x), want [%#x, %#x)", c.start, c.n, lo, hi, c.lo, c.hi)
		}
		if lo != hi && ((c.start+uintptr(lo))%4096 != 0 || (c.start+uintptr(hi))%4096 != 0 || hi > c.n) {
			t.Errorf("wholePages(%#x, %d) = [%#x, %#x) is not whole pages inside the range", c.start, c.n, lo, hi)
		}
	}
}
