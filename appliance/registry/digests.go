package registry

import (
	_ "crypto/sha512" // registers sha512 with go-digest
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Distribution stores every blob and manifest under its sha256 digest. Blobs pushed under
// another algorithm (sha512) get a per-repository link, but its responses still name the sha256
// digest, and manifests cannot be pushed by a sha512 digest at all. gluebox fixes both at the HTTP
// layer: responses name the digest the client used, and manifests pushed by a non-canonical
// digest are stored under sha256 with an alias file
// <root>/<repo>/<alg>/<hex> holding the canonical digest.
type aliasIndex struct{ root string }

func (a aliasIndex) path(repo string, d digest.Digest) string {
	return filepath.Join(a.root, filepath.FromSlash(repo), d.Algorithm().String(), d.Encoded())
}

func (a aliasIndex) set(repo string, alias, canonical digest.Digest) error {
	if err := writeFileAtomic(a.path(repo, alias), []byte(canonical.String()), 0o600); err != nil {
		return fmt.Errorf("cannot record digest alias %s: %w", alias, err)
	}
	return nil
}

func (a aliasIndex) get(repo string, alias digest.Digest) (digest.Digest, bool) {
	b, err := os.ReadFile(a.path(repo, alias))
	if err != nil {
		return "", false
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	return d, err == nil
}

func (a aliasIndex) remove(repo string, alias digest.Digest) error {
	err := os.Remove(a.path(repo, alias))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove digest alias %s: %w", alias, err)
	}
	return nil
}

// nonCanonical returns the digest s names when it is valid and not sha256.
func nonCanonical(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() == digest.Canonical {
		return "", false
	}
	return d, true
}

// hookWriter lets a handler adjust response headers just before they are sent.
type hookWriter struct {
	http.ResponseWriter
	onHeader func(code int, h http.Header)
	wrote    bool
}

func (h *hookWriter) WriteHeader(code int) {
	if !h.wrote {
		h.wrote = true
		h.onHeader(code, h.Header())
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *hookWriter) Write(b []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}

func (h *hookWriter) Flush() {
	if f, ok := h.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (h *hookWriter) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// renameDigest makes a successful response name digest want instead of the canonical one;
// then, when not nil, is called with the canonical digest distribution answered.
func renameDigest(w http.ResponseWriter, want digest.Digest, then func(canonical digest.Digest)) *hookWriter {
	return &hookWriter{ResponseWriter: w, onHeader: func(code int, h http.Header) {
		if code/100 != 2 {
			return
		}
		old := h.Get("Docker-Content-Digest")
		if old == "" {
			return
		}
		h.Set("Docker-Content-Digest", want.String())
		if loc := h.Get("Location"); old != "" && loc != "" {
			h.Set("Location", strings.Replace(loc, old, want.String(), 1))
		}
		if d, err := digest.Parse(old); err == nil && then != nil && code == http.StatusCreated {
			then(d)
		}
	}}
}

// blobDigestFixes handles blob requests that name a non-sha256 digest: GET/HEAD by such a
// digest, and upload completions, monolithic uploads and mounts carrying one. Distribution mounts
// only the canonical digest into the target repository; the alias link is added here.
func (r *Registry) blobDigestFixes(w http.ResponseWriter, req *http.Request, rt route) http.ResponseWriter {
	switch rt.kind {
	case "blobs":
		if d, ok := nonCanonical(rt.ref); ok {
			return renameDigest(w, d, nil)
		}
	case "uploads":
		q := req.URL.Query()
		if d, ok := nonCanonical(q.Get("digest")); ok {
			return renameDigest(w, d, nil)
		}
		if d, ok := nonCanonical(q.Get("mount")); ok {
			from := q.Get("from")
			return renameDigest(w, d, func(digest.Digest) {
				// Distribution links the alias to itself; point it at the canonical blob the
				// source repository's alias link names.
				src := fmt.Sprintf("/docker/registry/v2/repositories/%s/_layers/%s/%s/link", from, d.Algorithm(), d.Encoded())
				b, err := r.driver.GetContent(req.Context(), src)
				if err != nil || !validRepo(from) {
					return
				}
				canonical, err := digest.Parse(strings.TrimSpace(string(b)))
				if err != nil {
					return
				}
				for _, alias := range []digest.Digest{d, canonical} {
					link := fmt.Sprintf("/docker/registry/v2/repositories/%s/_layers/%s/%s/link", rt.repo, alias.Algorithm(), alias.Encoded())
					if err := r.driver.PutContent(req.Context(), link, []byte(canonical.String())); err != nil {
						r.log.Error("cannot link mounted blob alias", "repo", rt.repo, "digest", alias, "err", err)
					}
				}
			})
		}
	}
	return w
}
