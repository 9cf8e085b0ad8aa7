package frontdoor

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gluebox/gluebox/appliance/pki"
)

func certPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", file)
	}
	return pool
}

// handshake connects to addr with SNI name, verifying the chain against roots, and returns the
// server's leaf certificate.
func handshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestTLS(t *testing.T) {
	certDir := t.TempDir()

	// An app that brings its own certificate, from a CA the front door knows nothing about.
	appDir := t.TempDir()
	appCA, err := pki.EnsureCA(appDir, "app-ca")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := appCA.Ensure(appDir, "own", pki.Spec{CommonName: "own.example.com", DNSNames: []string{"own.example.com"}, Usage: pki.Server})
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := os.ReadFile(pair.CertFile)
	key, _ := os.ReadFile(pair.KeyFile)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "own", Name: "own-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key}}
	own := newIngress("own", "web", 1, rule("own.example.com", prefix("/", "web")))
	own.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"own.example.com"}, SecretName: "own-tls"}}
	broken := newIngress("broken", "web", 1, rule("broken.example.com", prefix("/", "web")))
	broken.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "missing"}}
	app := newIngress("app", "web", 1, rule("a.example.com", prefix("/", "web")), rule("*.apps.example.com", prefix("/", "web")))
	hostless := newIngress("ops", "any", 1, rule("", prefix("/", "web")))

	h := newHarness(t, func(c *Config) { c.HTTPSAddr, c.CertDir = "127.0.0.1:0", certDir }, secret, own, broken, app, hostless)
	h.backend("app", "web")
	addr := h.fd.BoundHTTPSAddr()

	if want := filepath.Join(certDir, "ingress-ca.crt"); h.fd.CAFile() != want {
		t.Errorf("CAFile() = %q, want %q", h.fd.CAFile(), want)
	}
	roots := certPool(t, h.fd.CAFile())
	for _, tc := range []struct {
		sni      string
		roots    *x509.CertPool
		dnsNames []string
	}{
		{"a.example.com", roots, []string{"a.example.com"}},
		{"A.Example.COM", roots, []string{"a.example.com"}},
		{"x.apps.example.com", roots, []string{"*.apps.example.com"}},
		{"y.apps.example.com", roots, []string{"*.apps.example.com"}},
		{"broken.example.com", roots, []string{"broken.example.com"}}, // its Secret is missing: the CA steps in
		{"own.example.com", certPool(t, appCA.CertFile), []string{"own.example.com"}},
	} {
		leaf, err := handshake(addr, tc.sni, tc.roots)
		if err != nil {
			t.Errorf("handshake with SNI %s: %v", tc.sni, err)
			continue
		}
		if !slices.Equal(leaf.DNSNames, tc.dnsNames) {
			t.Errorf("SNI %s got a certificate for %v, want %v", tc.sni, leaf.DNSNames, tc.dnsNames)
		}
	}
	block, _ := pem.Decode(crt)
	if leaf, err := handshake(addr, "own.example.com", certPool(t, appCA.CertFile)); err != nil || !bytes.Equal(leaf.Raw, block.Bytes) {
		t.Errorf("own.example.com is not served with its Secret's certificate (%v)", err)
	}
	if !strings.Contains(h.logs.String(), "TLS Secret broken/missing is not available") {
		t.Errorf("the missing Secret was not logged:\n%s", h.logs.String())
	}

	// Names no Ingress rule serves get no certificate, not even under a host-less rule.
	for _, sni := range []string{"unknown.example.com", "deep.x.apps.example.com", "apps.example.com", ""} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			t.Errorf("handshake with SNI %q succeeded; want a handshake error", sni)
		}
	}
	files, _ := filepath.Glob(filepath.Join(certDir, "ingress-certs", "*.crt"))
	for i := range files {
		files[i] = filepath.Base(files[i])
	}
	slices.Sort(files)
	if want := []string{"_wildcard.apps.example.com.crt", "a.example.com.crt", "broken.example.com.crt"}; !slices.Equal(files, want) {
		t.Errorf("issued certificate files = %v, want %v", files, want)
	}

	// A request over HTTPS reaches the backend, which learns the scheme.
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	r := do(t, &http.Client{Transport: tr}, "https://a.example.com", "a.example.com", "/x")
	if r.echo.Backend != "app/web" || r.echo.XFProto != "https" {
		t.Errorf("HTTPS request: %d %+v; want app/web with X-Forwarded-Proto https", r.status, r.echo)
	}

	// A host added later gets a certificate once its Ingress is served.
	if _, err := handshake(addr, "late.example.com", roots); err == nil {
		t.Fatal("late.example.com has a certificate before its Ingress exists")
	}
	late := newIngress("app", "late", 2, rule("late.example.com", prefix("/", "web")))
	if _, err := h.cs.NetworkingV1().Ingresses("app").Create(context.Background(), late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a certificate for late.example.com", func() bool {
		_, err := handshake(addr, "late.example.com", roots)
		return err == nil
	})
}

func TestIssuedCertificateRenewsInMemory(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.EnsureCA(dir, "ingress-ca")
	if err != nil {
		t.Fatal(err)
	}
	s := newCertStore(ca, filepath.Join(dir, "ingress-certs"), nil, nil, nil)
	c, err := s.issue("a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.issue("a.example.com")
	if err != nil || again != c {
		t.Fatalf("second issue = %p, %v; want the cached %p", again, err, c)
	}
	// Pretend the cached certificate expires within the renewal margin.
	aging := *c.Leaf
	aging.NotAfter = time.Now().Add(renewBefore - time.Hour)
	c.Leaf = &aging
	renewed, err := s.issue("a.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if renewed == c || time.Until(renewed.Leaf.NotAfter) < renewBefore {
		t.Errorf("an expiring certificate was not replaced (NotAfter %s)", renewed.Leaf.NotAfter)
	}
}
