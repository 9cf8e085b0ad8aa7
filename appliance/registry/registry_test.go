package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
)

// testRegistry is a registry serving on 127.0.0.1 with a log of the requests it saw.
type testRegistry struct {
	*Registry
	host string
	dir  string

	mu   sync.Mutex
	seen []string // "METHOD path?query"
}

// newTestRegistry starts a registry on a free loopback port; cfg.Dir and cfg.Addr are filled in.
func newTestRegistry(t *testing.T, cfg Config, opts ...Option) *testRegistry {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.GCInterval = -1
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r, err := New(cfg, logger, opts...)
	if err != nil {
		t.Fatal(err)
	}
	tr := &testRegistry{Registry: r, dir: cfg.Dir}
	inner := r.handler
	r.handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tr.mu.Lock()
		tr.seen = append(tr.seen, req.Method+" "+req.URL.RequestURI())
		tr.mu.Unlock()
		inner.ServeHTTP(w, req)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		r.Close() // idempotent
	})
	regReady := make(chan error, 1)
	go func() { regReady <- r.WaitReady(ctx) }()
	select {
	case err := <-regReady:
		if err != nil {
			t.Fatalf("registry not ready: %v", err)
		}
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("registry not ready after 20s")
	}
	tr.host = r.Addr()
	return tr
}

func (tr *testRegistry) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(tr.host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func (tr *testRegistry) requests(prefix string) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, s := range tr.seen {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func (tr *testRegistry) url(p string) string { return "http://" + tr.host + p }

func ociImage(t *testing.T, size, layers int64) ggcrv1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return img
}

func mustDigest(t *testing.T, f interface{ Digest() (ggcrv1.Hash, error) }) ggcrv1.Hash {
	t.Helper()
	h, err := f.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pullAll pulls ref and reads every layer, failing on any digest mismatch.
func pullAll(t *testing.T, ref name.Reference, opts ...remote.Option) ggcrv1.Image {
	t.Helper()
	img, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("pull layer of %s: %v", ref, err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("read layer of %s: %v", ref, err)
		}
		if err := rc.Close(); err != nil { // ggcr verifies the digest on Close
			t.Fatalf("verify layer of %s: %v", ref, err)
		}
	}
	return img
}

func TestPushPullRoundTrips(t *testing.T) {
	tr := newTestRegistry(t, Config{})

	t.Run("multi-layer image", func(t *testing.T) {
		img := ociImage(t, 64<<10, 5)
		ref := tr.ref(t, "apps/web:v1")
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		got := pullAll(t, ref)
		if mustDigest(t, got) != mustDigest(t, img) {
			t.Fatalf("pulled digest %s, pushed %s", mustDigest(t, got), mustDigest(t, img))
		}
	})

	t.Run("index", func(t *testing.T) {
		idx, err := random.Index(16<<10, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		ref := tr.ref(t, "apps/multi:latest")
		if err := remote.WriteIndex(ref, idx); err != nil {
			t.Fatal(err)
		}
		got, err := remote.Index(ref)
		if err != nil {
			t.Fatal(err)
		}
		if mustDigest(t, got) != mustDigest(t, idx) {
			t.Fatal("index digest changed")
		}
		im, err := got.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range im.Manifests {
			pullAll(t, tr.ref(t, "apps/multi@"+m.Digest.String()))
		}
	})

	t.Run("cross-repository mount", func(t *testing.T) {
		src := tr.ref(t, "team-a/base:1")
		if err := remote.Write(src, ociImage(t, 32<<10, 3)); err != nil {
			t.Fatal(err)
		}
		pulled, err := remote.Image(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := tr.ref(t, "team-b/app:1")
		if err := remote.Write(dst, pulled); err != nil {
			t.Fatal(err)
		}
		if n := len(tr.requests("POST /v2/team-b/app/blobs/uploads/?from=team-a")); n == 0 {
			t.Fatal("no cross-repository mount request seen")
		}
		if n := len(tr.requests("PATCH /v2/team-b/app/")); n != 0 {
			t.Fatalf("%d blob uploads to team-b/app, want all layers mounted", n)
		}
		pullAll(t, dst)
	})

	t.Run("resumable chunked upload", func(t *testing.T) {
		data := bytes.Repeat([]byte("gluebox-chunk-"), 50000)
		d := digest.FromBytes(data)
		loc := startUpload(t, tr, "chunky/blob")
		half := len(data) / 2
		loc = patchChunk(t, loc, data[:half], 0)
		// A client that lost its connection asks where the upload stands and resumes there.
		req, _ := http.NewRequest(http.MethodGet, loc, nil)
		resp := do(t, req)
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Range") != fmt.Sprintf("0-%d", half-1) {
			t.Fatalf("upload status: %d Range=%q", resp.StatusCode, resp.Header.Get("Range"))
		}
		loc = patchChunk(t, loc, data[half:], half)
		putDone(t, loc, d, nil, http.StatusCreated)
		resp = get(t, tr.url("/v2/chunky/blob/blobs/"+d.String()))
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Equal(body, data) {
			t.Fatalf("blob read back differs (%d bytes, want %d)", len(body), len(data))
		}
	})
}

func absLoc(t *testing.T, tr *testRegistry, resp *http.Response) string {
	t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("no Location in %d answer", resp.StatusCode)
	}
	if strings.HasPrefix(loc, "/") {
		loc = tr.url(loc)
	}
	return loc
}

func startUpload(t *testing.T, tr *testRegistry, repo string) string {
	t.Helper()
	resp := do(t, mustReq(t, http.MethodPost, tr.url("/v2/"+repo+"/blobs/uploads/"), nil))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d", resp.StatusCode)
	}
	return absLoc(t, tr, resp)
}

func patchChunk(t *testing.T, loc string, chunk []byte, offset int) string {
	t.Helper()
	req := mustReq(t, http.MethodPatch, loc, chunk)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+len(chunk)-1))
	resp := do(t, req)
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("patch: %d %s", resp.StatusCode, b)
	}
	return resp.Request.URL.ResolveReference(mustURL(t, resp.Header.Get("Location"))).String()
}

func putDone(t *testing.T, loc string, d digest.Digest, body []byte, want int) *http.Response {
	t.Helper()
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp := do(t, mustReq(t, http.MethodPut, loc+sep+"digest="+d.String(), body))
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("complete upload: %d %s, want %d", resp.StatusCode, b, want)
	}
	return resp
}

func mustReq(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	return do(t, mustReq(t, http.MethodGet, url, nil))
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// ociErrorCode returns the first error code of an OCI error body.
func ociErrorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not an OCI error body (%d): %s", resp.StatusCode, b)
	}
	return body.Errors[0].Code
}

func TestInterruptedUploadLeavesNoBlob(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	data := bytes.Repeat([]byte{7}, 1<<20)
	d := digest.FromBytes(data)

	// The client dies in the middle of a PATCH body.
	loc := startUpload(t, tr, "flaky/blob")
	conn, err := net.Dial("tcp", tr.host)
	if err != nil {
		t.Fatal(err)
	}
	u := mustURL(t, loc)
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), tr.host, len(data))
	conn.Write(data[:len(data)/3])
	conn.Close()

	// Completing with the full digest now fails: the stored bytes are short whether or not the
	// server has finished with the broken PATCH yet, so there is nothing to wait for.
	resp := do(t, mustReq(t, http.MethodPut, loc+"&digest="+d.String(), nil))
	if resp.StatusCode/100 == 2 {
		t.Fatalf("truncated upload accepted with %d", resp.StatusCode)
	}
	resp = do(t, mustReq(t, http.MethodHead, tr.url("/v2/flaky/blob/blobs/"+d.String()), nil))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD after interrupted upload: %d, want 404", resp.StatusCode)
	}

	// A fresh upload of the same content then works and reads back intact.
	loc = startUpload(t, tr, "flaky/blob")
	putDone(t, loc, d, data, http.StatusCreated)
	body, _ := io.ReadAll(get(t, tr.url("/v2/flaky/blob/blobs/"+d.String())).Body)
	if digest.FromBytes(body) != d {
		t.Fatal("blob corrupt after re-upload")
	}
}

func TestBadInput(t *testing.T) {
	tr := newTestRegistry(t, Config{MaxManifestBytes: 64 << 10})
	good := ociImage(t, 4<<10, 2)
	goodRef := tr.ref(t, "safe/app:good")
	if err := remote.Write(goodRef, good); err != nil {
		t.Fatal(err)
	}
	raw, err := good.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("some layer bytes")
	missing := digest.FromString("never pushed")
	unknownLayer := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[]}`, missing)

	tests := []struct {
		name     string
		method   string
		path     string // raw path, not cleaned by a client
		body     []byte
		ctype    string
		status   int
		code     string
		setupLoc bool // path is appended to a fresh upload location
		hdr      map[string]string
	}{
		{name: "malformed manifest", method: http.MethodPut, path: "/v2/safe/app/manifests/bad", body: []byte("{not json"), ctype: "application/vnd.oci.image.manifest.v1+json", status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest digest mismatch", method: http.MethodPut, path: "/v2/safe/app/manifests/" + digest.FromString("other").String(), body: raw, ctype: "application/vnd.oci.image.manifest.v1+json", status: 400, code: "DIGEST_INVALID"},
		{name: "manifest with unknown blob", method: http.MethodPut, path: "/v2/safe/app/manifests/ghost", body: []byte(unknownLayer), ctype: "application/vnd.oci.image.manifest.v1+json", status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "oversized manifest", method: http.MethodPut, path: "/v2/safe/app/manifests/huge", body: bytes.Repeat([]byte(" "), 65<<10), ctype: "application/vnd.oci.image.manifest.v1+json", status: 413, code: "SIZE_INVALID"},
		{name: "blob digest mismatch", method: http.MethodPut, path: "&digest=" + digest.FromString("not the content").String(), body: blob, status: 400, code: "DIGEST_INVALID", setupLoc: true},
		{name: "chunk out of order", method: http.MethodPatch, path: "", body: blob, status: 416, code: "RANGE_INVALID", setupLoc: true,
			hdr: map[string]string{"Content-Range": fmt.Sprintf("100-%d", 100+len(blob)-1), "Content-Type": "application/octet-stream"}},
		{name: "path traversal", method: http.MethodGet, path: "/v2/safe/../../etc/manifests/good", status: 400, code: "NAME_INVALID"},
		{name: "path traversal upload", method: http.MethodPost, path: "/v2/../x/blobs/uploads/", status: 400, code: "NAME_INVALID"},
		{name: "upper case name", method: http.MethodGet, path: "/v2/Safe/App/tags/list", status: 400, code: "NAME_INVALID"},
		{name: "unknown manifest", method: http.MethodGet, path: "/v2/safe/app/manifests/nope", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "bad referrers digest", method: http.MethodGet, path: "/v2/safe/app/referrers/sha256:xyz", status: 400, code: "DIGEST_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tr.url(tt.path)
			if tt.setupLoc {
				target = startUpload(t, tr, "safe/app") + tt.path
			}
			req := mustReq(t, tt.method, target, tt.body)
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			if !tt.setupLoc {
				// Send the path exactly as written: no client-side cleaning of "..".
				req.URL.Opaque = "//" + tr.host + tt.path
			}
			resp := do(t, req)
			if resp.StatusCode != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if got := ociErrorCode(t, resp); got != tt.code {
				t.Fatalf("code %s, want %s", got, tt.code)
			}
		})
	}
	// Nothing stored was harmed.
	got := pullAll(t, goodRef)
	if mustDigest(t, got) != mustDigest(t, good) {
		t.Fatal("good image changed")
	}
}

func writeHtpasswd(t *testing.T, user, pass string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte("# users\n"+user+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthOffLoopback(t *testing.T) {
	// RequireAuth makes the loopback listener behave as a public one, so traffic stays on 127.0.0.1.
	tokens := TokenAuthenticator{Verify: func(_ context.Context, tok string) (*Principal, error) {
		switch tok {
		case "pull-token":
			return &Principal{Name: "cluster-b", Push: false}, nil
		case "push-token":
			return &Principal{Name: "builder", Push: true, Repos: []string{"apps/"}}, nil
		}
		return nil, nil
	}}
	tr := newTestRegistry(t, Config{RequireAuth: true, HtpasswdFile: writeHtpasswd(t, "admin", "s3cret")}, WithAuthenticator(tokens))
	img := ociImage(t, 4<<10, 1)
	ref := tr.ref(t, "apps/api:1")

	// Anonymous: 401 with a challenge, for the ping, pulls and pushes.
	for _, p := range []string{"/v2/", "/v2/apps/api/manifests/1", "/v2/_catalog"} {
		resp := get(t, tr.url(p))
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Fatalf("GET %s anonymous: %d %q", p, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if code := ociErrorCode(t, resp); code != "UNAUTHORIZED" {
			t.Fatalf("GET %s anonymous: code %s", p, code)
		}
	}
	if err := remote.Write(ref, img); err == nil {
		t.Fatal("anonymous push succeeded")
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: "admin", Password: "wrong"})); err == nil {
		t.Fatal("push with a wrong password succeeded")
	}

	// htpasswd user: push and pull.
	admin := remote.WithAuth(&authn.Basic{Username: "admin", Password: "s3cret"})
	if err := remote.Write(ref, img, admin); err != nil {
		t.Fatalf("push as admin: %v", err)
	}
	pullAll(t, ref, admin)

	// Pull-only token (robot credentials of a joined cluster): pulls yes, pushes 403.
	pull := remote.WithAuth(&authn.Basic{Username: "token", Password: "pull-token"})
	pullAll(t, ref, pull)
	if err := remote.Write(tr.ref(t, "apps/api:2"), img, pull); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("push with pull-only token: %v, want DENIED", err)
	}
	// Bearer token limited to apps/: may ping, pushes there, not elsewhere.
	req := mustReq(t, http.MethodGet, tr.url("/v2/"), nil)
	req.Header.Set("Authorization", "Bearer push-token")
	if resp := do(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer ping: %d", resp.StatusCode)
	}
	req = mustReq(t, http.MethodGet, tr.url("/v2/apps/api/tags/list"), nil)
	req.Header.Set("Authorization", "Bearer push-token")
	if resp := do(t, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("bearer tags list: %d", resp.StatusCode)
	}
	req = mustReq(t, http.MethodPost, tr.url("/v2/other/blobs/uploads/"), nil)
	req.Header.Set("Authorization", "Bearer push-token")
	if resp := do(t, req); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bearer push outside its repos: %d, want 403", resp.StatusCode)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Dir: dir}, true},
		{"no dir", Config{}, false},
		{"relative dir", Config{Dir: "registry"}, false},
		{"public without tls", Config{Dir: dir, Addr: "0.0.0.0:5000"}, false},
		{"all interfaces without tls", Config{Dir: dir, Addr: ":5000"}, false},
		{"public with tls", Config{Dir: dir, Addr: "10.0.0.1:5000", TLSCertFile: "c", TLSKeyFile: "k"}, true},
		{"half tls", Config{Dir: dir, TLSCertFile: "c"}, false},
		{"bad addr", Config{Dir: dir, Addr: "nope"}, false},
		{"ipv6 loopback", Config{Dir: dir, Addr: "[::1]:5000"}, true},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	// Off loopback, credentials are mandatory.
	if _, err := New(Config{Dir: dir, Addr: "10.0.0.1:5000", TLSCertFile: "c", TLSKeyFile: "k"}, nil); err == nil || !strings.Contains(err.Error(), "requires authentication") {
		t.Errorf("New without credentials off loopback: %v", err)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := New(Config{Dir: t.TempDir(), Addr: l.Addr().String(), GCInterval: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	err = r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "already in use") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run on a busy port: %v", err)
	}
}

func TestReferrers(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	subject := ociImage(t, 4<<10, 1)
	subjRef := tr.ref(t, "signed/app:1")
	if err := remote.Write(subjRef, subject); err != nil {
		t.Fatal(err)
	}
	subjDesc, err := remote.Head(subjRef)
	if err != nil {
		t.Fatal(err)
	}
	attach := func(artifactType string) ggcrv1.Hash {
		t.Helper()
		a := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		a = mutate.ConfigMediaType(a, types.MediaType(artifactType))
		a, err := mutate.Append(a, mutate.Addendum{Layer: mustLayer(t, artifactType)})
		if err != nil {
			t.Fatal(err)
		}
		a = mutate.Subject(a, *subjDesc).(ggcrv1.Image)
		h := mustDigest(t, a)
		if err := remote.Write(tr.ref(t, "signed/app@"+h.String()), a); err != nil {
			t.Fatal(err)
		}
		return h
	}
	sig := attach("application/vnd.dev.cosign.simplesigning.v1+json")
	sbom := attach("application/spdx+json")

	subjDigest := tr.ref(t, "signed/app@"+subjDesc.Digest.String()).(name.Digest)
	idx, err := remote.Referrers(subjDigest)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 {
		t.Fatalf("%d referrers, want 2", len(im.Manifests))
	}

	// artifactType filter and its header.
	resp := get(t, tr.url("/v2/signed/app/referrers/"+subjDesc.Digest.String()+"?artifactType=application/spdx%2Bjson"))
	var filtered ggcrv1.IndexManifest
	json.NewDecoder(resp.Body).Decode(&filtered)
	if resp.Header.Get("OCI-Filters-Applied") != "artifactType" || len(filtered.Manifests) != 1 || filtered.Manifests[0].Digest != sbom {
		t.Fatalf("filtered referrers: %v %+v", resp.Header, filtered.Manifests)
	}
	if filtered.Manifests[0].ArtifactType != "application/spdx+json" {
		t.Fatalf("artifactType %q", filtered.Manifests[0].ArtifactType)
	}

	// OCI-Subject on PUT.
	a, _ := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{Layer: mustLayer(t, "x")})
	a = mutate.Subject(a, *subjDesc).(ggcrv1.Image)
	for _, l := range mustLayers(t, a) {
		if err := remote.WriteLayer(tr.ref(t, "signed/app:x").Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	cfgBlob, _ := a.RawConfigFile()
	loc := startUpload(t, tr, "signed/app")
	putDone(t, loc, digest.FromBytes(cfgBlob), cfgBlob, http.StatusCreated)
	raw, _ := a.RawManifest()
	req := mustReq(t, http.MethodPut, tr.url("/v2/signed/app/manifests/"+digest.FromBytes(raw).String()), raw)
	req.Header.Set("Content-Type", string(types.OCIManifestSchema1))
	if resp := do(t, req); resp.StatusCode != http.StatusCreated || resp.Header.Get("OCI-Subject") != subjDesc.Digest.String() {
		t.Fatalf("PUT with subject: %d OCI-Subject=%q", resp.StatusCode, resp.Header.Get("OCI-Subject"))
	}

	// Deleting a referrer removes it from the list.
	req = mustReq(t, http.MethodDelete, tr.url("/v2/signed/app/manifests/"+sig.String()), nil)
	if resp := do(t, req); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete referrer: %d", resp.StatusCode)
	}
	resp = get(t, tr.url("/v2/signed/app/referrers/"+subjDesc.Digest.String()))
	var after ggcrv1.IndexManifest
	json.NewDecoder(resp.Body).Decode(&after)
	for _, m := range after.Manifests {
		if m.Digest == sig {
			t.Fatal("deleted referrer still listed")
		}
	}
	if len(after.Manifests) != 2 {
		t.Fatalf("%d referrers after delete, want 2", len(after.Manifests))
	}

	// A lost index is rebuilt from storage on the next start.
	if err := os.RemoveAll(filepath.Join(tr.dir, "gluebox", "referrers")); err != nil {
		t.Fatal(err)
	}
	again, err := New(Config{Dir: tr.dir, Addr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	list, err := again.referrers.list("signed/app", digest.Digest(subjDesc.Digest.String()), "")
	if err != nil || len(list) != 2 {
		t.Fatalf("rebuilt index: %d referrers (%v), want 2", len(list), err)
	}
}

func mustLayer(t *testing.T, seed string) ggcrv1.Layer {
	t.Helper()
	l, err := random.Layer(512, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	_ = seed
	return l
}

func mustLayers(t *testing.T, img ggcrv1.Image) []ggcrv1.Layer {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestGC(t *testing.T) {
	tr := newTestRegistry(t, Config{KeepLast: 1, GCGrace: -1})
	push := func(tag string) (ggcrv1.Hash, []ggcrv1.Hash) {
		t.Helper()
		img := ociImage(t, 8<<10, 2)
		if err := remote.Write(tr.ref(t, "gc/app:"+tag), img); err != nil {
			t.Fatal(err)
		}
		var blobs []ggcrv1.Hash
		for _, l := range mustLayers(t, img) {
			d, _ := l.Digest()
			blobs = append(blobs, d)
		}
		return mustDigest(t, img), blobs
	}
	deployed, deployedBlobs := push("v1")
	old, oldBlobs := push("v2")
	newest, newestBlobs := push("v3")
	// A multi-arch index that is older than v3 but deployed: it and its children survive.
	idx, _ := random.Index(4<<10, 1, 2)
	if err := remote.WriteIndex(tr.ref(t, "gc/app:multi"), idx); err != nil {
		t.Fatal(err)
	}
	idxDigest := mustDigest(t, idx)
	newest2, _ := push("v4") // now the newest: v3 falls out of KeepLast=1
	// Pushes close together may share a file time (the kernel's clock is coarse), so the order
	// must come from the registry's push numbers: make the file times say the opposite.
	base := time.Now()
	for i, d := range []ggcrv1.Hash{deployed, old, newest, idxDigest, newest2} {
		link := filepath.Join(tr.dir, "docker/registry/v2/repositories/gc/app/_manifests/revisions/sha256", d.Hex, "link")
		at := base.Add(-time.Duration(i) * time.Second)
		if err := os.Chtimes(link, at, at); err != nil {
			t.Fatal(err)
		}
	}

	// An orphan blob (uploaded, never referenced).
	orphan := []byte("orphan")
	putDone(t, startUpload(t, tr, "gc/app"), digest.FromBytes(orphan), orphan, http.StatusCreated)

	// Readers keep reading while GC runs.
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := remote.Image(tr.ref(t, "gc/app@"+deployed.String())); err != nil {
				readErr <- err
				return
			}
		}
	}()

	dry, err := tr.GC(context.Background(), GCOptions{Keep: []digest.Digest{digest.Digest(deployed.String()), digest.Digest(idxDigest.String())}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := tr.GC(context.Background(), GCOptions{Keep: []digest.Digest{digest.Digest(deployed.String()), digest.Digest(idxDigest.String())}})
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-readErr; err != nil {
		t.Fatalf("reader failed during GC: %v", err)
	}
	if dry.ManifestsDeleted != rep.ManifestsDeleted || dry.BlobsDeleted != rep.BlobsDeleted {
		t.Errorf("dry run %+v differs from run %+v", dry, rep)
	}
	if rep.ManifestsDeleted != 2 || rep.TagsDeleted != 2 {
		t.Errorf("deleted %d manifests / %d tags, want 2 / 2 (v2, v3): %v", rep.ManifestsDeleted, rep.TagsDeleted, rep.Deleted)
	}
	// v2 and v3 layers, configs and manifests, plus the orphan.
	if want := 2*(2+1+1) + 1; rep.BlobsDeleted != want {
		t.Errorf("deleted %d blobs, want %d", rep.BlobsDeleted, want)
	}

	for _, d := range []ggcrv1.Hash{deployed, newest2} {
		pullAll(t, tr.ref(t, "gc/app@"+d.String()))
	}
	if _, err := remote.Index(tr.ref(t, "gc/app@"+idxDigest.String())); err != nil {
		t.Errorf("kept index gone: %v", err)
	}
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		pullAll(t, tr.ref(t, "gc/app@"+m.Digest.String()))
	}
	for _, d := range []ggcrv1.Hash{old, newest} {
		if _, err := remote.Head(tr.ref(t, "gc/app@"+d.String())); err == nil {
			t.Errorf("manifest %s survived GC", d)
		}
	}
	for _, b := range append(append([]ggcrv1.Hash{}, oldBlobs...), newestBlobs...) {
		if resp := do(t, mustReq(t, http.MethodHead, tr.url("/v2/gc/app/blobs/"+b.String()), nil)); resp.StatusCode != http.StatusNotFound {
			t.Errorf("blob %s: HEAD %d after GC, want 404", b, resp.StatusCode)
		}
		if _, err := os.Stat(filepath.Join(tr.dir, "docker/registry/v2/blobs/sha256", b.Hex[:2], b.Hex)); err == nil {
			t.Errorf("blob %s still on disk", b)
		}
	}
	for _, b := range deployedBlobs {
		if resp := do(t, mustReq(t, http.MethodHead, tr.url("/v2/gc/app/blobs/"+b.String()), nil)); resp.StatusCode != http.StatusOK {
			t.Errorf("kept blob %s: HEAD %d", b, resp.StatusCode)
		}
	}
	st, err := tr.Status(context.Background())
	if err != nil || st.LastGC == nil || st.Repositories != 1 || st.StorageBytes == 0 {
		t.Errorf("status after gc: %+v %v", st, err)
	}
	// A second GC finds nothing more to do.
	again, err := tr.GC(context.Background(), GCOptions{Keep: []digest.Digest{digest.Digest(deployed.String()), digest.Digest(idxDigest.String())}})
	if err != nil || again.ManifestsDeleted != 0 || again.BlobsDeleted != 0 {
		t.Errorf("second gc: %+v %v", again, err)
	}
}

func TestGCSparesYoungBlobs(t *testing.T) {
	tr := newTestRegistry(t, Config{}) // default grace: 1h
	orphan := []byte("layer uploaded, manifest still coming")
	putDone(t, startUpload(t, tr, "busy/app"), digest.FromBytes(orphan), orphan, http.StatusCreated)
	rep, err := tr.GC(context.Background(), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BlobsDeleted != 0 || rep.BlobsTooYoung != 1 {
		t.Fatalf("young orphan: %+v", rep)
	}
}

// TestLocalAPI calls the registry's routes over a unix socket as the CLI does (the commands
// themselves are tested in appliance/cli).
func TestLocalAPI(t *testing.T) {
	tr := newTestRegistry(t, Config{GCGrace: -1})
	if err := remote.Write(tr.ref(t, "cli/app:v1"), ociImage(t, 4<<10, 2)); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	tr.Register(mux)
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := api.NewClient(sock)
	ctx := context.Background()

	var repos []RepoInfo
	if err := c.Do(ctx, RouteRepositories.Method, RouteRepositories.Path(), nil, &repos); err != nil || len(repos) != 1 || repos[0].Name != "cli/app" || repos[0].Tags[0].Name != "v1" || repos[0].Tags[0].Size == 0 {
		t.Fatalf("repositories: %+v %v", repos, err)
	}
	var rep Report
	if err := c.Do(ctx, RouteGC.Method, RouteGC.Path(), GCOptions{DryRun: true}, &rep); err != nil || !rep.DryRun || rep.ManifestsDeleted != 0 {
		t.Fatalf("gc --dry-run: %+v %v", rep, err)
	}
	err = c.Do(ctx, RouteGC.Method, RouteGC.Path(), GCOptions{Keep: []digest.Digest{"nonsense"}}, nil)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, `cannot keep "nonsense"`) {
		t.Fatalf("gc with a bad digest: %v", err)
	}
	var metrics bytes.Buffer
	if err := c.Stream(ctx, RouteMetrics.Method, RouteMetrics.Path(), nil, &metrics); err != nil || !strings.Contains(metrics.String(), "# TYPE") {
		t.Fatalf("metrics: %v\n%.300s", err, metrics.String())
	}
}

func TestSHA512SurvivesGC(t *testing.T) {
	tr := newTestRegistry(t, Config{GCGrace: -1})
	sha512Of := func(b []byte) digest.Digest { return digest.SHA512.FromBytes(b) }
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := bytes.Repeat([]byte("sha512 layer "), 100)
	for _, b := range [][]byte{cfg, layer} {
		putDone(t, startUpload(t, tr, "five12/app"), sha512Of(b), b, http.StatusCreated)
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		sha512Of(cfg), len(cfg), sha512Of(layer), len(layer))
	md := sha512Of([]byte(m))
	req := mustReq(t, http.MethodPut, tr.url("/v2/five12/app/manifests/"+md.String()), []byte(m))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if resp := do(t, req); resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != md.String() {
		t.Fatalf("PUT by sha512: %d %q", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if _, err := tr.GC(context.Background(), GCOptions{}); err != nil {
		t.Fatal(err)
	}
	req = mustReq(t, http.MethodGet, tr.url("/v2/five12/app/manifests/"+md.String()), nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp := do(t, req)
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || string(body) != m {
		t.Fatalf("manifest by sha512 after GC: %d", resp.StatusCode)
	}
	for _, b := range [][]byte{cfg, layer} {
		resp := get(t, tr.url("/v2/five12/app/blobs/"+sha512Of(b).String()))
		if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK || !bytes.Equal(body, b) {
			t.Fatalf("blob %s after GC: %d", sha512Of(b), resp.StatusCode)
		}
	}
}

func TestMonolithicUploadAndMetrics(t *testing.T) {
	tr := newTestRegistry(t, Config{})
	data := []byte("one request is enough")
	d := digest.FromBytes(data)
	resp := do(t, mustReq(t, http.MethodPost, tr.url("/v2/mono/app/blobs/uploads/?digest="+d.String()), data))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("monolithic POST: %d %v", resp.StatusCode, resp.Header)
	}
	if body, _ := io.ReadAll(get(t, tr.url("/v2/mono/app/blobs/"+d.String())).Body); !bytes.Equal(body, data) {
		t.Fatal("monolithic blob reads back differently")
	}
	bad := do(t, mustReq(t, http.MethodPost, tr.url("/v2/mono/app/blobs/uploads/?digest="+digest.FromString("x").String()), data))
	if bad.StatusCode != http.StatusBadRequest || ociErrorCode(t, bad) != "DIGEST_INVALID" {
		t.Fatalf("monolithic POST with a wrong digest: %d", bad.StatusCode)
	}

	rec := httptest.NewRecorder()
	tr.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`gluebox_registry_http_requests_total{code="201",method="POST",route="uploads"} 1`,
		`gluebox_registry_http_request_bytes_total{route="uploads"}`,
		`gluebox_registry_storage_bytes`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, cert, key)
	tr := newTestRegistry(t, Config{TLSCertFile: cert, TLSKeyFile: key})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + tr.host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("TLS ping: %d", resp.StatusCode)
	}
}

func writeSelfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "registry.gluebox.local"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}
