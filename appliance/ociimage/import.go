package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Import pushes the image in file — a `docker save` tarball or an OCI image-layout archive
// (`oci-archive`, e.g. from buildah or skopeo) — to the registry at registry (host:port, plain
// HTTP) as repository:tag as. An empty as uses the tarball's own tag (docker save) or
// org.opencontainers.image.ref.name (OCI), with the registry host dropped. It returns the
// pushed reference and digest. `FROM` lines then resolve through the built-in registry
// offline.
func Import(ctx context.Context, file, registry, as string) (string, v1.Hash, error) {
	isOCI, err := isOCIArchive(file)
	if err != nil {
		return "", v1.Hash{}, err
	}
	if isOCI {
		return importOCI(ctx, file, registry, as)
	}
	tag, err := dockerTag(file, as)
	if err != nil {
		return "", v1.Hash{}, err
	}
	var srcTag *name.Tag
	if as == "" {
		t, err := name.NewTag(tag)
		if err != nil {
			return "", v1.Hash{}, fmt.Errorf("%s: image name %q: %w", file, tag, err)
		}
		srcTag = &t
	}
	img, err := tarball.ImageFromPath(file, srcTag)
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("%s is not a docker save or OCI archive: %w", file, err)
	}
	ref, err := target(registry, tag)
	if err != nil {
		return "", v1.Hash{}, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", v1.Hash{}, fmt.Errorf("cannot push %s: %w", ref, err)
	}
	d, err := img.Digest()
	return ref.String(), d, err
}

// target is repository:tag under registry; a registry host in name is replaced.
func target(registry, ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("image name %q: %w (use --as repo/name:tag)", ref, err)
	}
	repo := r.Context().RepositoryStr()
	id := r.Identifier()
	sep := ":"
	if strings.HasPrefix(id, "sha256:") {
		sep = "@"
	}
	return name.ParseReference(registry+"/"+repo+sep+id, name.Insecure)
}

func isOCIArchive(file string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s is not a tar archive: %w", file, err)
		}
		if strings.TrimPrefix(h.Name, "./") == "oci-layout" {
			return true, nil
		}
	}
}

// dockerTag is as, or the first RepoTag of a docker save tarball.
func dockerTag(file, as string) (string, error) {
	if as != "" {
		return as, nil
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return "", fmt.Errorf("%s: cannot read manifest.json: %w", file, err)
	}
	if len(m) == 0 || len(m[0].RepoTags) == 0 {
		return "", fmt.Errorf("%s names no image: give one with --as repo/name:tag", file)
	}
	return m[0].RepoTags[0], nil
}

func importOCI(ctx context.Context, file, registry, as string) (string, v1.Hash, error) {
	dir, err := os.MkdirTemp("", "gluebox-oci-")
	if err != nil {
		return "", v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	if err := untar(file, dir); err != nil {
		return "", v1.Hash{}, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return "", v1.Hash{}, fmt.Errorf("%s: not an OCI image layout: %w", file, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return "", v1.Hash{}, err
	}
	if len(im.Manifests) != 1 {
		return "", v1.Hash{}, fmt.Errorf("%s holds %d images; import archives with exactly one", file, len(im.Manifests))
	}
	desc := im.Manifests[0]
	if as == "" {
		as = desc.Annotations["org.opencontainers.image.ref.name"]
		if as == "" || !strings.Contains(as, ":") && !strings.Contains(as, "/") {
			return "", v1.Hash{}, fmt.Errorf("%s does not name its image: give one with --as repo/name:tag", file)
		}
	}
	ref, err := target(registry, as)
	if err != nil {
		return "", v1.Hash{}, err
	}
	if desc.MediaType.IsIndex() {
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return "", v1.Hash{}, err
		}
		if err := remote.WriteIndex(ref, child, remote.WithContext(ctx)); err != nil {
			return "", v1.Hash{}, fmt.Errorf("cannot push %s: %w", ref, err)
		}
		return ref.String(), desc.Digest, nil
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return "", v1.Hash{}, err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return "", v1.Hash{}, fmt.Errorf("cannot push %s: %w", ref, err)
	}
	return ref.String(), desc.Digest, nil
}

// untar extracts regular files and directories of file under dir, refusing paths that leave it.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			out.Close()
			if err != nil {
				return fmt.Errorf("%s: %s: %w", file, h.Name, err)
			}
		}
	}
}
