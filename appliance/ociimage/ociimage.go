// Package ociimage builds tiny single-binary container images as image tarballs that containerd
// imports, such as the node's pause image. It has no lifecycle; anything may import it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// PauseImage is the reference of the pause image gluebox builds and pins as the sandbox image.
const PauseImage = "gluebox.local/pause:1"

// SingleBinary returns an image whose only file is the binary at bin, placed at target (an
// absolute path inside the image) and used as the entrypoint.
func SingleBinary(bin, target string, extraArgs ...string) (v1.Image, error) {
	if !path.IsAbs(target) {
		return nil, fmt.Errorf("cannot place %s at %q: the path in the image must be absolute", bin, target)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", bin, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := strings.TrimPrefix(path.Dir(target), "/")
	if dir != "" && dir != "." {
		if err := tw.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(target, "/"), Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot build layer for %s: %w", bin, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("cannot append layer: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = "amd64"
	cfg.OS = "linux"
	cfg.Config.Entrypoint = append([]string{target}, extraArgs...)
	return mutate.ConfigFile(img, cfg)
}

// WriteSingleBinary writes SingleBinary(bin, target) as an image tarball named ref to file.
func WriteSingleBinary(file, bin, ref, target string) error {
	img, err := SingleBinary(bin, target)
	if err != nil {
		return err
	}
	return WriteTarball(file, ref, img)
}

// WriteTarball writes img as an image tarball (the `docker save` format, which containerd and
// `gluebox ctr images import` read) tagged ref.
func WriteTarball(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("cannot parse image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("cannot write image %s to %s: %w", ref, file, err)
	}
	return nil
}

// Busybox returns a base image made from a static busybox binary (Debian's busybox-static):
// /bin/busybox, a /bin/<applet> symlink for each applet, PATH=/bin and "sh" as the command.
// Tests, benchmarks and offline installs use it as a small real base image for Dockerfiles
// with RUN steps.
func Busybox(bin string, applets ...string) (v1.Image, error) {
	img, err := SingleBinary(bin, "/bin/busybox")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, a := range applets {
		if a == "" || strings.ContainsAny(a, "/\x00") {
			return nil, fmt.Errorf("busybox applet name %q is invalid", a)
		}
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"tmp/", "etc/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: mode}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		return nil, err
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = nil
	cf.Config.Cmd = []string{"sh"}
	cf.Config.Env = []string{"PATH=/bin"}
	return mutate.ConfigFile(img, cf)
}
