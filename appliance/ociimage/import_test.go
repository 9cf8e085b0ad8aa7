package ociimage

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gluebox/gluebox/appliance/registry"
)

func startRegistry(t *testing.T) string {
	t.Helper()
	registry.RouteDistributionLogs(slog.New(slog.DiscardHandler))
	reg, err := registry.New(registry.Config{Dir: t.TempDir(), Addr: "127.0.0.1:0", GCInterval: -1}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; reg.Close() })
	regReady := make(chan error, 1)
	go func() { regReady <- reg.WaitReady(ctx) }()
	select {
	case err := <-regReady:
		if err != nil {
			t.Fatalf("registry not ready: %v", err)
		}
	case err := <-done:
		t.Fatalf("registry did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("registry did not start in 30s")
	}
	return reg.Addr()
}

func TestImportDockerAndOCIArchives(t *testing.T) {
	addr := startRegistry(t)
	dir := t.TempDir()
	self, _ := os.Executable()
	img, err := SingleBinary(self, "/app")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()

	// docker save format, named by its own tag (the registry host in it is replaced).
	docker := filepath.Join(dir, "docker.tar")
	if err := WriteTarball(docker, "example.com/base/busybox:1.36", img); err != nil {
		t.Fatal(err)
	}
	ref, d, err := Import(context.Background(), docker, addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if ref != addr+"/base/busybox:1.36" || d != want {
		t.Fatalf("imported %s %s, want %s/base/busybox:1.36 %s", ref, d, addr, want)
	}
	r, _ := name.ParseReference(ref, name.Insecure)
	if got, err := remote.Head(r); err != nil || got.Digest != want {
		t.Fatalf("registry has %v %v", got, err)
	}

	// OCI image-layout archive, renamed with as.
	lp := filepath.Join(dir, "layout")
	p, err := layout.Write(lp, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	oci := filepath.Join(dir, "oci.tar")
	if err := tarDir(lp, oci); err != nil {
		t.Fatal(err)
	}
	ref, d, err = Import(context.Background(), oci, addr, "library/base:oci")
	if err != nil || ref != addr+"/library/base:oci" || d != want {
		t.Fatalf("OCI import = %s %s %v", ref, d, err)
	}
	// Without a name the archive must carry one.
	if _, _, err := Import(context.Background(), oci, addr, ""); err == nil || !strings.Contains(err.Error(), "--as") {
		t.Fatalf("unnamed OCI archive: %v", err)
	}
	// Not an archive at all.
	junk := filepath.Join(dir, "junk.tar")
	os.WriteFile(junk, []byte("not a tar"), 0o644)
	if _, _, err := Import(context.Background(), junk, addr, "x:y"); err == nil {
		t.Fatal("junk imported")
	}
}

// tarDir writes dir's files into a tar archive at file.
func tarDir(dir, file string) error {
	return writeTarOf(dir, file)
}
