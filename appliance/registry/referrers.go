package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// referrerIndex maps subject digests to the descriptors of the manifests that refer to them, per
// repository. Distribution v3.1 has no referrers API, so gluebox keeps this index beside its
// storage, maintained on manifest PUT and DELETE (and by GC). Layout:
// <root>/<repo>/<subject-alg>/<subject-hex>/<referrer-alg>-<referrer-hex>.json, one descriptor per
// file, so adding or removing a referrer is one atomic file operation.
type referrerIndex struct {
	root string
	mu   sync.Mutex
}

func newReferrerIndex(root string) *referrerIndex { return &referrerIndex{root: root} }

func (x *referrerIndex) dir(repo string, subject digest.Digest) string {
	return filepath.Join(x.root, filepath.FromSlash(repo), subject.Algorithm().String(), subject.Encoded())
}

func (x *referrerIndex) add(repo string, subject digest.Digest, d v1.Descriptor) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	p := filepath.Join(x.dir(repo, subject), d.Digest.Algorithm().String()+"-"+d.Digest.Encoded()+".json")
	if err := writeFileAtomic(p, b, 0o600); err != nil {
		return fmt.Errorf("cannot record referrer %s of %s: %w", d.Digest, subject, err)
	}
	return nil
}

func (x *referrerIndex) remove(repo string, subject, referrer digest.Digest) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	dir := x.dir(repo, subject)
	err := os.Remove(filepath.Join(dir, referrer.Algorithm().String()+"-"+referrer.Encoded()+".json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot remove referrer %s of %s: %w", referrer, subject, err)
	}
	_ = os.Remove(dir) // only succeeds when empty
	return nil
}

// list returns the referrers of subject in repo, filtered by artifactType when it is not empty,
// sorted by digest so answers are stable.
func (x *referrerIndex) list(repo string, subject digest.Digest, artifactType string) ([]v1.Descriptor, error) {
	ents, err := os.ReadDir(x.dir(repo, subject))
	if errors.Is(err, os.ErrNotExist) {
		return []v1.Descriptor{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list referrers of %s: %w", subject, err)
	}
	out := []v1.Descriptor{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(x.dir(repo, subject), e.Name()))
		if err != nil {
			continue // removed concurrently
		}
		var d v1.Descriptor
		if json.Unmarshal(b, &d) != nil {
			continue
		}
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// manifestFields is the part of any manifest the referrers API needs.
type manifestFields struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *v1.Descriptor    `json:"config"`
	Subject       *v1.Descriptor    `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// referrerDescriptor is how a manifest appears in its subject's referrers list.
func referrerDescriptor(m manifestFields, mediaType string, dgst digest.Digest, size int64) v1.Descriptor {
	at := m.ArtifactType
	if at == "" && m.Config != nil {
		at = m.Config.MediaType
	}
	if m.MediaType != "" {
		mediaType = m.MediaType
	}
	return v1.Descriptor{MediaType: mediaType, ArtifactType: at, Digest: dgst, Size: size, Annotations: m.Annotations}
}

// ociFixes adds to distribution what the OCI distribution spec 1.1 asks and distribution v3.1
// lacks: the referrers API, the OCI-Subject header, sha512 (non-canonical) digests for blobs and
// manifests, NAME_INVALID for bad repository names, and a size limit on manifests.
func (r *Registry) ociFixes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rt := parseRoute(req.URL.Path)
		switch rt.kind {
		case "manifests", "blobs", "uploads", "tags", "referrers":
			if !validRepo(rt.repo) {
				writeOCIError(w, http.StatusBadRequest, "NAME_INVALID", "invalid repository name", map[string]string{"name": rt.repo})
				return
			}
		}
		if rt.kind == "manifests" && req.Method != http.MethodPut {
			if alias, ok := nonCanonical(rt.ref); ok {
				canonical, found := r.aliases.get(rt.repo, alias)
				if !found {
					writeOCIError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown to registry", map[string]string{"digest": alias.String()})
					return
				}
				setPath(req, "/v2/"+rt.repo+"/manifests/"+canonical.String())
				w = renameDigest(w, alias, nil)
				rt.ref = canonical.String()
				if req.Method == http.MethodDelete {
					rec := &recorder{ResponseWriter: w}
					r.deleteManifest(rec, req, rt, next, alias)
					if rec.status == http.StatusAccepted {
						if err := r.aliases.remove(rt.repo, alias); err != nil {
							r.log.Error("cannot remove digest alias", "err", err)
						}
					}
					return
				}
			}
		}
		switch {
		case rt.kind == "referrers" && (req.Method == http.MethodGet || req.Method == http.MethodHead):
			r.serveReferrers(w, req, rt)
		case rt.kind == "manifests" && req.Method == http.MethodPut:
			r.putManifest(w, req, rt, next)
		case rt.kind == "manifests" && req.Method == http.MethodDelete:
			r.deleteManifest(w, req, rt, next)
		case rt.kind == "uploads" && rt.ref == "" && req.Method == http.MethodPost &&
			req.URL.Query().Get("digest") != "" && req.URL.Query().Get("mount") == "":
			r.monolithicUpload(w, req, rt, next)
		default:
			next.ServeHTTP(r.blobDigestFixes(w, req, rt), req)
		}
	})
}

func setPath(req *http.Request, p string) {
	u := *req.URL
	u.Path, u.RawPath = p, ""
	req.URL = &u
	req.RequestURI = u.RequestURI()
}

func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, rt route) {
	subject, err := digest.Parse(rt.ref)
	if err != nil {
		writeOCIError(w, http.StatusBadRequest, "DIGEST_INVALID", "invalid digest", map[string]string{"digest": rt.ref})
		return
	}
	at := req.URL.Query().Get("artifactType")
	list, err := r.referrers.list(rt.repo, subject, at)
	if err != nil {
		writeOCIError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
		return
	}
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: list}
	idx.SchemaVersion = 2
	b, _ := json.Marshal(idx)
	w.Header().Set("Content-Type", v1.MediaTypeImageIndex)
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(b)
	}
}

// putManifest reads the manifest (bounded) and lets distribution store it. A manifest pushed by a
// non-sha256 digest is verified here and stored under its sha256 digest with an alias. A manifest
// with a subject is recorded in the referrers index before the client sees the 201, so a
// referrers query right after the push sees it. Every accepted push is numbered (pushOrder).
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, rt route, next http.Handler) {
	limit := r.cfg.maxManifest()
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", "cannot read manifest: "+err.Error(), nil)
		return
	}
	if int64(len(body)) > limit {
		writeOCIError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", fmt.Sprintf("manifest is larger than %d bytes", limit), nil)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))

	var m manifestFields
	if err := json.Unmarshal(body, &m); err != nil {
		writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest is not valid JSON: "+err.Error(), nil)
		return
	}
	if m.Subject != nil {
		if err := m.Subject.Digest.Validate(); err != nil {
			writeOCIError(w, http.StatusBadRequest, "MANIFEST_INVALID", "invalid subject digest: "+err.Error(), nil)
			return
		}
	}
	alias, byAlias := nonCanonical(rt.ref)
	canonical := digest.FromBytes(body)
	if byAlias {
		if alias.Algorithm().FromBytes(body) != alias {
			writeOCIError(w, http.StatusBadRequest, "DIGEST_INVALID", "provided digest did not match uploaded content", map[string]string{"digest": alias.String()})
			return
		}
		setPath(req, "/v2/"+rt.repo+"/manifests/"+canonical.String())
	}
	mediaType := req.Header.Get("Content-Type")
	hw := &hookWriter{ResponseWriter: w, onHeader: func(code int, h http.Header) {
		if code != http.StatusCreated {
			return
		}
		if err := r.pushes.record(rt.repo, canonical); err != nil {
			r.log.Error("cannot number manifest push", "repo", rt.repo, "digest", canonical, "err", err)
		}
		if m.Subject == nil && !byAlias {
			return
		}
		known := canonical
		if byAlias {
			if err := r.aliases.set(rt.repo, alias, canonical); err != nil {
				r.log.Error("cannot record digest alias", "repo", rt.repo, "digest", alias, "err", err)
			}
			// A revision link under the alias lets distribution find this manifest by the
			// alias when it verifies an index that lists it so.
			link := fmt.Sprintf("/docker/registry/v2/repositories/%s/_manifests/revisions/%s/%s/link", rt.repo, alias.Algorithm(), alias.Encoded())
			if err := r.driver.PutContent(req.Context(), link, []byte(canonical.String())); err != nil {
				r.log.Error("cannot link digest alias", "repo", rt.repo, "digest", alias, "err", err)
			}
			known = alias
			h.Set("Docker-Content-Digest", alias.String())
			if loc := h.Get("Location"); loc != "" {
				h.Set("Location", strings.Replace(loc, canonical.String(), alias.String(), 1))
			}
		}
		if m.Subject != nil {
			d := referrerDescriptor(m, mediaType, known, int64(len(body)))
			if err := r.referrers.add(rt.repo, m.Subject.Digest, d); err != nil {
				r.log.Error("cannot index referrer", "repo", rt.repo, "subject", m.Subject.Digest, "err", err)
				return
			}
			h.Set("OCI-Subject", m.Subject.Digest.String())
		}
	}}
	next.ServeHTTP(hw, req)
}

// deleteManifest removes a manifest's referrers-index entry once distribution has deleted it;
// aliases are other digests the manifest may be indexed under (its sha512 digest).
func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, rt route, next http.Handler, aliases ...digest.Digest) {
	dgst, err := digest.Parse(rt.ref)
	if err != nil {
		next.ServeHTTP(w, req) // a tag delete: no referrer changes
		return
	}
	subject := r.subjectOf(req.Context(), rt.repo, dgst)
	rec := &recorder{ResponseWriter: w}
	next.ServeHTTP(rec, req)
	if subject == "" || rec.status != http.StatusAccepted {
		return
	}
	for _, d := range append([]digest.Digest{dgst}, aliases...) {
		if err := r.referrers.remove(rt.repo, subject, d); err != nil {
			r.log.Error("cannot unindex referrer", "repo", rt.repo, "digest", d, "err", err)
		}
	}
}

// subjectOf returns the subject of manifest dgst in repo, or "" if it has none or is unknown.
func (r *Registry) subjectOf(ctx context.Context, repo string, dgst digest.Digest) digest.Digest {
	b, err := r.manifestBytes(ctx, repo, dgst)
	if err != nil {
		return ""
	}
	var m manifestFields
	if json.Unmarshal(b, &m) != nil || m.Subject == nil {
		return ""
	}
	return m.Subject.Digest
}

// manifestBytes reads a stored manifest's raw bytes straight from the blob store.
func (r *Registry) manifestBytes(ctx context.Context, repo string, dgst digest.Digest) ([]byte, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return nil, err
	}
	repository, err := r.namespace.Repository(ctx, named)
	if err != nil {
		return nil, err
	}
	return readManifest(ctx, repository, dgst)
}

// readManifest returns the payload of manifest dgst as it was pushed.
func readManifest(ctx context.Context, repo distribution.Repository, dgst digest.Digest) ([]byte, error) {
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	m, err := ms.Get(ctx, dgst)
	if err != nil {
		return nil, err
	}
	_, payload, err := m.Payload()
	return payload, err
}

// monolithicUpload implements the single-request upload (POST ?digest= with the blob as body),
// which distribution answers with 202 and ignores the body: gluebox opens the upload session and
// completes it with the body in one go, so the client gets the 201 the spec describes.
func (r *Registry) monolithicUpload(w http.ResponseWriter, req *http.Request, rt route, next http.Handler) {
	d := req.URL.Query().Get("digest")
	open := req.Clone(req.Context())
	open.Body, open.ContentLength = http.NoBody, 0
	q := open.URL.Query()
	q.Del("digest")
	open.URL.RawQuery = q.Encode()
	open.RequestURI = open.URL.RequestURI()
	session := &captureWriter{header: http.Header{}}
	next.ServeHTTP(session, open)
	loc := session.header.Get("Location")
	if session.status != http.StatusAccepted || loc == "" {
		copyHeader(w.Header(), session.header)
		w.WriteHeader(session.status)
		_, _ = w.Write(session.body.Bytes())
		return
	}
	u, err := url.Parse(loc)
	if err != nil {
		writeOCIError(w, http.StatusInternalServerError, "UNKNOWN", "cannot parse upload location", nil)
		return
	}
	put := req.Clone(req.Context())
	put.Method = http.MethodPut
	uq := u.Query()
	uq.Set("digest", d)
	put.URL = &url.URL{Path: u.Path, RawQuery: uq.Encode()}
	put.RequestURI = put.URL.RequestURI()
	next.ServeHTTP(r.blobDigestFixes(w, put, parseRoute(u.Path)), put)
}

// captureWriter keeps a response in memory.
type captureWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	return c.body.Write(b)
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// rebuildReferrers fills a missing referrers index from the stored manifests (first start on a
// registry written by plain distribution, or a lost index). It returns how many it recorded.
func (r *Registry) rebuildReferrers(ctx context.Context) (int, error) {
	if err := os.MkdirAll(r.referrers.root, 0o700); err != nil {
		return 0, fmt.Errorf("cannot create referrers index: %w", err)
	}
	names, err := r.repositories(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		repo, err := r.repository(ctx, name)
		if err != nil {
			return n, err
		}
		all, err := r.manifests(ctx, repo)
		if err != nil {
			return n, fmt.Errorf("cannot read manifests of %s: %w", name, err)
		}
		for _, m := range all {
			if m.fields.Subject == nil {
				continue
			}
			d := referrerDescriptor(m.fields, "", m.digest, m.size)
			if err := r.referrers.add(name, m.fields.Subject.Digest, d); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
