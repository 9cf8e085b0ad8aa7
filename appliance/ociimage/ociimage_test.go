package ociimage

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteSingleBinaryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "img.tar")
	if err := WriteSingleBinary(out, bin, "gluebox.local/hello:1", "/bin/hello"); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("gluebox.local/hello:1")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/bin/hello" {
		t.Fatalf("entrypoint = %v", got)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
}

func TestRelativeTargetRefused(t *testing.T) {
	if _, err := SingleBinary("/bin/true", "pause"); err == nil {
		t.Fatal("a relative path inside the image must be refused")
	}
}
