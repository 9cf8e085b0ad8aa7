// Command mkbundle writes the zstd-compressed tar archives that gluebox embeds, each with a file
// holding the archive's SHA-256, in the form appliance/bundle extracts:
//
//   - the helper bundle (default): bin/* from -in, images/pause.tar (an OCI image of our own
//     pause program) and VERSIONS, as embed/bundle/bundle.tar.zst;
//   - with -program FILE: just that program, as gluebox, for the launcher
//     (embed/launcher/payload/gluebox.tar.zst).
//
// Usage: go run ./embed/mkbundle -in DIR -out embed/bundle [-gomod embed/tools/go.mod -gomod embed/obs/go.mod]
//
//	go run ./embed/mkbundle -program bin/gluebox-core -out embed/launcher/payload
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

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/ociimage"
)

func main() {
	in := flag.String("in", "", "directory with the built helper programs")
	out := flag.String("out", "embed/bundle", "directory to write the archive and its SHA-256 to")
	var gomods goMods
	flag.Var(&gomods, "gomod", "go.mod pinning bundled programs, for the VERSIONS file; repeatable (default embed/tools/go.mod)")
	program := flag.String("program", "", "pack only this program (as gluebox) for the launcher")
	flag.Parse()
	var err error
	if *program != "" {
		err = writeArchive(*out, "gluebox", []entry{{src: *program, name: "gluebox", mode: 0o755}})
	} else {
		if len(gomods) == 0 {
			gomods = goMods{"embed/tools/go.mod"}
		}
		err = helperBundle(*in, *out, gomods)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

// goMods collects the repeated -gomod flag.
type goMods []string

func (g *goMods) String() string     { return strings.Join(*g, ",") }
func (g *goMods) Set(v string) error { *g = append(*g, v); return nil }

// entry is one file of an archive: read from src, or data when src is empty.
type entry struct {
	src, name string
	data      []byte
	mode      int64
}

func helperBundle(in, out string, gomods []string) error {
	if in == "" {
		return fmt.Errorf("-in is required")
	}
	dirEntries, err := os.ReadDir(in)
	if err != nil {
		return fmt.Errorf("cannot list %s: %w", in, err)
	}
	var entries []entry
	for _, e := range dirEntries {
		if e.Type().IsRegular() {
			entries = append(entries, entry{src: filepath.Join(in, e.Name()), name: "bin/" + e.Name(), mode: 0o755})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	pauseTar := filepath.Join(in, "..", "pause-image.tar")
	if err := ociimage.WriteSingleBinary(pauseTar, filepath.Join(in, "pause"), ociimage.PauseImage, "/pause"); err != nil {
		return fmt.Errorf("cannot build pause image: %w", err)
	}
	versions, err := bundledVersions(gomods)
	if err != nil {
		return err
	}
	entries = append(entries,
		entry{src: pauseTar, name: "images/pause.tar", mode: 0o644},
		entry{name: "VERSIONS", data: []byte(versions), mode: 0o644})
	if err := writeArchive(out, "bundle", entries); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "VERSIONS"), []byte(versions), 0o644)
}

// writeArchive writes <out>/<base>.tar.zst (atomically) and <out>/<base>.sha256.
// windowSize is the zstd window of both archives. The bundled programs share much code (the Go
// runtime, gRPC, protobuf, containerd and VictoriaMetrics libraries) at distances far beyond
// the default 8 MiB window; a 64 MiB window finds it: the helper bundle shrank from 70 to 46 MB
// when measured. Extraction then needs a 64 MiB buffer, once, at first start.
const windowSize = 64 << 20

func writeArchive(out, base string, entries []entry) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	h := sha256.New()
	err := atomicfile.Write(filepath.Join(out, base+".tar.zst"), 0o644, func(f io.Writer) error {
		zw, err := zstd.NewWriter(io.MultiWriter(f, h), zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(windowSize))
		if err != nil {
			return err
		}
		tw := tar.NewWriter(zw)
		for _, e := range entries {
			data := e.data
			if e.src != "" {
				if data, err = os.ReadFile(e.src); err != nil {
					return fmt.Errorf("cannot add %s: %w", e.name, err)
				}
			}
			if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(out, base+".sha256"), []byte(hex.EncodeToString(h.Sum(nil))+"\n"), 0o644)
}

// bundledVersions names each bundled program's module version, one "name version" per line,
// from the go.mod files that pin them.
func bundledVersions(gomods []string) (string, error) {
	names := map[string][]string{
		"github.com/containerd/containerd/v2":        {"containerd"},
		"github.com/opencontainers/runc":             {"runc"},
		"github.com/containernetworking/plugins":     {"cni-plugins"},
		"github.com/coredns/coredns":                 {"coredns"},
		"github.com/VictoriaMetrics/VictoriaMetrics": {"victoria-metrics", "vmalert"},
		"github.com/VictoriaMetrics/VictoriaLogs":    {"victoria-logs", "vlagent"},
		"github.com/prometheus/alertmanager":         {"alertmanager"},
		"github.com/moby/buildkit":                   {"buildkitd"},
	}
	var lines []string
	seen := map[string]bool{} // a program's version comes from the first go.mod naming it
	for _, gomod := range gomods {
		data, err := os.ReadFile(gomod)
		if err != nil {
			return "", fmt.Errorf("cannot read %s: %w", gomod, err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				for _, n := range names[f[0]] {
					if !seen[n] {
						seen[n] = true
						lines = append(lines, n+" "+f[1])
					}
				}
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n", nil
}
