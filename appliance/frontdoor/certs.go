package frontdoor

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/gluebox/gluebox/appliance/pki"
)

// renewBefore is how long before expiry an issued certificate is replaced; pki.CA.Ensure uses
// the same margin on disk.
const renewBefore = 30 * 24 * time.Hour

// certStore picks the certificate for a TLS handshake: the Ingress's own Secret when it has one
// for the host, otherwise one issued by the ingress CA. It only ever signs names some current
// Ingress rule serves, so the CA is not a signing oracle for whoever can open a connection.
type certStore struct {
	ca      *pki.CA
	dir     string
	secrets corelisters.SecretLister
	log     *slog.Logger
	table   func() *table

	mu         sync.Mutex
	issued     map[string]*tls.Certificate // by host pattern
	fromSecret map[string]secretCert       // by namespace/name
	warned     map[string]string           // namespace/name → last warning logged
}

type secretCert struct {
	version string // resourceVersion the entry was parsed from
	cert    *tls.Certificate
	err     error
}

func newCertStore(ca *pki.CA, dir string, secrets corelisters.SecretLister, log *slog.Logger, table func() *table) *certStore {
	return &certStore{ca: ca, dir: dir, secrets: secrets, log: log, table: table,
		issued: map[string]*tls.Certificate{}, fromSecret: map[string]secretCert{}, warned: map[string]string{}}
}

func (s *certStore) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.getCertificate}
}

func (s *certStore) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if name == "" {
		return nil, errors.New("frontdoor: the client sent no server name (SNI); connect by a host name that an Ingress serves")
	}
	if len(validation.IsDNS1123Subdomain(name)) > 0 {
		return nil, fmt.Errorf("frontdoor: server name %q is not a DNS name", name)
	}
	pattern, hr, ok := s.table().certHost(name)
	if !ok {
		return nil, fmt.Errorf("frontdoor: no Ingress serves host %q, so there is no certificate for it", name)
	}
	if hr.tls != nil {
		if c := s.secretCert(*hr.tls, name); c != nil {
			return c, nil
		}
	}
	return s.issue(pattern)
}

// secretCert returns the certificate in an Ingress's TLS Secret, or nil (after logging once why)
// when it is missing, malformed or not valid for name; the caller then falls back to the CA.
func (s *certStore) secretCert(ref secretRef, name string) *tls.Certificate {
	key := ref.namespace + "/" + ref.name
	sec, err := s.secrets.Secrets(ref.namespace).Get(ref.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.warnLocked(key, fmt.Sprintf("TLS Secret %s is not available (it must be in the Ingress's namespace and of type kubernetes.io/tls): %v", key, err))
		return nil
	}
	sc, ok := s.fromSecret[key]
	if !ok || sc.version != sec.ResourceVersion {
		sc = secretCert{version: sec.ResourceVersion}
		if sec.Type != corev1.SecretTypeTLS {
			sc.err = fmt.Errorf("its type is %q, not %s", sec.Type, corev1.SecretTypeTLS)
		} else if c, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey]); err != nil {
			sc.err = err
		} else if sc.err = ensureLeaf(&c); sc.err == nil {
			sc.cert = &c
		}
		s.fromSecret[key] = sc
	}
	if sc.err != nil {
		s.warnLocked(key, fmt.Sprintf("TLS Secret %s cannot be used: %v", key, sc.err))
		return nil
	}
	if err := sc.cert.Leaf.VerifyHostname(name); err != nil {
		s.warnLocked(key, fmt.Sprintf("TLS Secret %s does not cover host %s: %v", key, name, err))
		return nil
	}
	return sc.cert
}

// warnLocked logs msg unless it is what was last logged for key, so a broken Secret costs one
// line, not one per handshake.
func (s *certStore) warnLocked(key, msg string) {
	if s.warned[key] == msg {
		return
	}
	s.warned[key] = msg
	s.log.Warn(msg + "; serving a certificate from the ingress CA instead")
}

// issue returns the CA-issued certificate for a host pattern, from memory, from disk, or freshly
// signed. A wildcard pattern gets one wildcard certificate, so random names under a wildcard
// rule cannot make the CA write a file each.
func (s *certStore) issue(pattern string) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.issued[pattern]; c != nil && time.Until(c.Leaf.NotAfter) > renewBefore {
		return c, nil
	}
	cn := pattern
	if len(cn) > 64 { // X.509 caps the common name; DNSNames carries the name anyway
		cn = ""
	}
	p, err := s.ca.Ensure(s.dir, certName(pattern), pki.Spec{CommonName: cn, DNSNames: []string{pattern}, Usage: pki.Server})
	if err != nil {
		return nil, fmt.Errorf("frontdoor: cannot issue a certificate for %s: %w", pattern, err)
	}
	c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("frontdoor: cannot load the certificate for %s from %s: %w", pattern, p.CertFile, err)
	}
	if err := ensureLeaf(&c); err != nil {
		return nil, fmt.Errorf("frontdoor: cannot parse %s: %w", p.CertFile, err)
	}
	s.issued[pattern] = &c
	return &c, nil
}

func ensureLeaf(c *tls.Certificate) error {
	if c.Leaf != nil {
		return nil
	}
	if len(c.Certificate) == 0 {
		return errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	c.Leaf = leaf
	return err
}

// certName is the file name (without extension) of a host pattern's certificate. Patterns are
// validated DNS names, so only [a-z0-9.-] and a leading "*." occur; anything else is replaced
// anyway, and long or altered names get a hash so they stay unique and short.
func certName(pattern string) string {
	name := pattern
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		name = "_wildcard." + rest
	}
	altered := false
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		altered = true
		return '_'
	}, name)
	if strings.HasPrefix(name, ".") {
		name, altered = "_"+name, true
	}
	if altered || len(name) > 200 {
		sum := sha256.Sum256([]byte(pattern))
		name = name[:min(len(name), 150)] + "-" + hex.EncodeToString(sum[:8])
	}
	return name
}
