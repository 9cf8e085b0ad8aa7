// Package pki owns the certificates and keys of one gluebox cluster under <data-dir>/pki: a
// cluster CA, serving and client certificates for every component, the service-account signing
// key, kubeconfig files and the at-rest encryption key for Kubernetes Secrets. Everything is
// created on first boot and reused afterwards; a leaf whose names changed (new node IP) or that
// expires within 30 days is re-issued. The server and cleanup import it.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// CA is a certificate authority whose key is on disk.
type CA struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertFile string
	KeyFile  string
}

// Usage says what a leaf certificate is for.
type Usage int

const (
	// Client certificates authenticate to a server.
	Client Usage = 1 << iota
	// Server certificates serve TLS.
	Server
)

// Spec describes a leaf certificate.
type Spec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
}

// Pair is an issued leaf certificate and its key on disk.
type Pair struct {
	CertFile string
	KeyFile  string
}

// EnsureCA loads the CA called name from dir or creates it.
func EnsureCA(dir, name string) (*CA, error) {
	ca := &CA{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	cert, key, err := load(ca.CertFile, ca.KeyFile)
	if err == nil {
		ca.Cert, ca.Key = cert, key
		return ca, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cannot load CA %s: %w (remove %s to start a new cluster)", name, err, dir)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "gluebox-" + name + "@" + fmt.Sprint(now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("cannot create CA %s: %w", name, err)
	}
	if err := write(dir, ca.CertFile, ca.KeyFile, der, caKey); err != nil {
		return nil, err
	}
	ca.Cert, _ = x509.ParseCertificate(der)
	ca.Key = caKey
	return ca, nil
}

// Ensure returns the leaf called name in dir, issuing it when missing, expiring within 30 days,
// not signed by ca, or issued for other names than spec asks.
func (ca *CA) Ensure(dir, name string, spec Spec) (Pair, error) {
	p := Pair{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	if cert, _, err := load(p.CertFile, p.KeyFile); err == nil && ca.current(cert, spec) {
		return p, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     spec.DNSNames,
		IPAddresses:  spec.IPs,
	}
	if spec.Usage&Client != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if spec.Usage&Server != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return Pair{}, fmt.Errorf("cannot issue certificate %s: %w", name, err)
	}
	if err := write(dir, p.CertFile, p.KeyFile, der, key); err != nil {
		return Pair{}, err
	}
	return p, nil
}

func (ca *CA) current(cert *x509.Certificate, spec Spec) bool {
	if time.Until(cert.NotAfter) < 30*24*time.Hour || cert.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	if cert.Subject.CommonName != spec.CommonName || !slices.Equal(cert.Subject.Organization, spec.Organization) {
		return false
	}
	if !slices.Equal(cert.DNSNames, spec.DNSNames) || len(cert.IPAddresses) != len(spec.IPs) {
		return false
	}
	for i := range spec.IPs {
		if !cert.IPAddresses[i].Equal(spec.IPs[i]) {
			return false
		}
	}
	return true
}

// EnsureSigningKey loads or creates an ECDSA key pair used to sign service-account tokens and
// returns the paths of the private and public key files.
func EnsureSigningKey(dir, name string) (keyFile, pubFile string, err error) {
	keyFile, pubFile = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if _, err := os.Stat(keyFile); err == nil {
		if _, err := os.Stat(pubFile); err == nil {
			return keyFile, pubFile, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := atomicfile.WriteFile(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return "", "", err
	}
	return keyFile, pubFile, nil
}

// EnsureEncryptionConfig writes, once, the apiserver's EncryptionConfiguration that seals
// Secrets at rest with a random AES-GCM key (secretbox would do as well), and returns its path.
func EnsureEncryptionConfig(dir string) (string, error) {
	path := filepath.Join(dir, "encryption-config.yaml")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: %s
      - identity: {}
`, base64.StdEncoding.EncodeToString(key))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return path, atomicfile.WriteFile(path, []byte(cfg), 0o600)
}

// WriteKubeconfig writes a kubeconfig at path that reaches server with the given client pair,
// trusting ca.
func WriteKubeconfig(path, server string, ca *CA, p Pair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["gluebox"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: ca.CertFile}
	cfg.AuthInfos["gluebox"] = &clientcmdapi.AuthInfo{ClientCertificate: p.CertFile, ClientKey: p.KeyFile}
	cfg.Contexts["gluebox"] = &clientcmdapi.Context{Cluster: "gluebox", AuthInfo: "gluebox"}
	cfg.CurrentContext = "gluebox"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func load(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certFile, keyFile)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse %s: %w", certFile, err)
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse %s: %w", keyFile, err)
	}
	return cert, key, nil
}

func write(dir, certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
