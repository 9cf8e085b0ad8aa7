package pki

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"
)

func TestCAAndLeafReuseAndReissue(t *testing.T) {
	dir := t.TempDir()
	ca, err := EnsureCA(dir, "cluster-ca")
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := EnsureCA(dir, "cluster-ca")
	if err != nil || !ca2.Cert.Equal(ca.Cert) {
		t.Fatalf("CA was not reused: %v", err)
	}
	spec := Spec{CommonName: "kube-apiserver", DNSNames: []string{"kubernetes"}, IPs: []net.IP{net.ParseIP("10.43.0.1")}, Usage: Server}
	p, err := ca.Ensure(dir, "apiserver", spec)
	if err != nil {
		t.Fatal(err)
	}
	first := readCert(t, p.CertFile)
	if err := first.CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Ensure(dir, "apiserver", spec); err != nil {
		t.Fatal(err)
	}
	if !readCert(t, p.CertFile).Equal(first) {
		t.Fatal("an unchanged leaf was re-issued")
	}
	spec.IPs = append(spec.IPs, net.ParseIP("192.0.2.9"))
	if _, err := ca.Ensure(dir, "apiserver", spec); err != nil {
		t.Fatal(err)
	}
	again := readCert(t, p.CertFile)
	if again.Equal(first) || len(again.IPAddresses) != 2 {
		t.Fatalf("a leaf with new names was not re-issued: %v", again.IPAddresses)
	}
}

func TestCorruptCAIsAnErrorNotANewCluster(t *testing.T) {
	dir := t.TempDir()
	if _, err := EnsureCA(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/ca.crt", []byte("garbage"), 0o644)
	if _, err := EnsureCA(dir, "ca"); err == nil {
		t.Fatal("a corrupt CA must not be silently replaced")
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
