// Command mkbundle packs the helper programs that `make` built into the compressed bundle that
// the gluebox binary embeds: a zstd-compressed tar of bin/* plus images/pause.tar (an OCI image
// built from our own pause program), and a file holding the bundle's SHA-256.
//
// Usage: go run ./embed/mkbundle -in DIR -out embed/bundle
package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/gluebox/gluebox/appliance/ociimage"
)

func main() {
	in := flag.String("in", "", "directory with the built helper programs")
	out := flag.String("out", "embed/bundle", "directory to write bundle.tar.zst and bundle.sha256 to")
	gomod := flag.String("gomod", "embed/tools/go.mod", "go.mod pinning the bundled programs, for the VERSIONS file")
	flag.Parse()
	if err := run(*in, *out, *gomod); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run(in, out, gomod string) error {
	if in == "" {
		return fmt.Errorf("-in is required")
	}
	entries, err := os.ReadDir(in)
	if err != nil {
		return fmt.Errorf("cannot list %s: %w", in, err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)

	pauseTar := filepath.Join(in, "..", "pause-image.tar")
	if err := ociimage.WriteSingleBinary(pauseTar, filepath.Join(in, "pause"), ociimage.PauseImage, "/pause"); err != nil {
		return fmt.Errorf("cannot build pause image: %w", err)
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(out, "bundle.tar.zst.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	h := sha256.New()
	zw, err := zstd.NewWriter(io.MultiWriter(f, h), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	add := func(src, name string, mode int64) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	for _, n := range names {
		if err := add(filepath.Join(in, n), "bin/"+n, 0o755); err != nil {
			return fmt.Errorf("cannot add %s: %w", n, err)
		}
	}
	if err := add(pauseTar, "images/pause.tar", 0o644); err != nil {
		return fmt.Errorf("cannot add pause image: %w", err)
	}
	versions, err := bundledVersions(gomod)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "VERSIONS", Mode: 0o644, Size: int64(len(versions)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write([]byte(versions)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(out, "bundle.tar.zst")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "VERSIONS"), []byte(versions), 0o644); err != nil {
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return os.WriteFile(filepath.Join(out, "bundle.sha256"), []byte(sum+"\n"), 0o644)
}

// bundledVersions names each bundled program's module version, one "name version" per line.
func bundledVersions(gomod string) (string, error) {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", gomod, err)
	}
	names := map[string]string{
		"github.com/containerd/containerd/v2":    "containerd",
		"github.com/opencontainers/runc":         "runc",
		"github.com/containernetworking/plugins": "cni-plugins",
		"github.com/coredns/coredns":             "coredns",
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			if n, ok := names[f[0]]; ok {
				lines = append(lines, n+" "+f[1])
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n", nil
}
