package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func makeBundle(t *testing.T, files map[string]string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), hex.EncodeToString(sum[:])
}

func TestExtractIsIdempotentAndConcurrent(t *testing.T) {
	data, sum := makeBundle(t, map[string]string{"bin/runc": "runc", "images/pause.tar": "img"})
	root := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Extract(root, data, sum)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := Extract(root, data, sum)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(d.Bin("runc")); string(b) != "runc" {
		t.Fatalf("runc = %q", b)
	}
	if target, _ := os.Readlink(filepath.Join(root, "current")); target != sum[:12] {
		t.Fatalf("current -> %q", target)
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, ".extract-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temp dirs left behind: %v", leftovers)
	}
}

func TestExtractRefusesCorruptBundle(t *testing.T) {
	data, sum := makeBundle(t, map[string]string{"bin/x": "x"})
	data[len(data)/2] ^= 0xff
	_, err := Extract(t.TempDir(), data, sum)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("want corrupt-bundle error, got %v", err)
	}
}

func TestExtractRefusesEscapingEntries(t *testing.T) {
	data, sum := makeBundle(t, map[string]string{"../evil": "x"})
	root := t.TempDir()
	if _, err := Extract(filepath.Join(root, "bin"), data, sum); err == nil {
		t.Fatal("an entry escaping the bundle dir must be refused")
	}
	if _, err := os.Stat(filepath.Join(root, "evil")); err == nil {
		t.Fatal("escaping entry was written")
	}
}
