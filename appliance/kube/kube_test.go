package kube

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gluebox/gluebox/appliance/paths"
)

func TestClusterNetworkDefaults(t *testing.T) {
	var n ClusterNetwork
	n.Defaults()
	want := ClusterNetwork{APIPort: 6443, ServiceCIDR: "10.43.0.0/16", ClusterCIDR: "10.42.0.0/16"}
	if diff := cmp.Diff(want, n); diff != "" {
		t.Errorf("defaults (-want +got)\n%s", diff)
	}
	set := ClusterNetwork{APIPort: 7443, ServiceCIDR: "10.96.0.0/12", ClusterCIDR: "10.244.0.0/16"}
	got := set
	got.Defaults()
	if diff := cmp.Diff(set, got); diff != "" {
		t.Errorf("Defaults overrode set values (-want +got)\n%s", diff)
	}
}

func TestServiceIP(t *testing.T) {
	for _, tc := range []struct {
		cidr    string
		i       byte
		want    string
		wantErr string
	}{
		{cidr: "10.43.0.0/16", i: 1, want: "10.43.0.1"},
		{cidr: "10.43.0.0/16", i: 10, want: "10.43.0.10"},
		{cidr: "10.96.0.0/12", i: 1, want: "10.96.0.1"},
		{cidr: "10.43.7.9/16", i: 10, want: "10.43.0.10"}, // counted from the network address
		{cidr: "nonsense", i: 1, wantErr: `service CIDR "nonsense"`},
		{cidr: "", i: 1, wantErr: `service CIDR ""`},
		{cidr: "fd00::/108", i: 1, wantErr: "only IPv4"},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			got, err := ClusterNetwork{ServiceCIDR: tc.cidr}.ServiceIP(tc.i)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ServiceIP = %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("ServiceIP(%d) = %v, %v; want %s", tc.i, got, err, tc.want)
			}
		})
	}
}

// newTestCerts issues the cluster PKI into a fresh data dir for node-1 at nodeIP.
func newTestCerts(t *testing.T, l paths.Layout, nodeIP string) *Certs {
	t.Helper()
	n := ClusterNetwork{NodeName: "node-1", NodeIP: net.ParseIP(nodeIP)}
	n.Defaults()
	c, err := EnsureCerts(l, n)
	if err != nil {
		t.Fatalf("EnsureCerts: %v", err)
	}
	return c
}

func testLayout(t *testing.T) paths.Layout {
	t.Helper()
	l, err := paths.New(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func loadCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM block", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

func TestEnsureCertsKubeconfigs(t *testing.T) {
	l := testLayout(t)
	c := newTestCerts(t, l, "192.168.1.20")
	ca := loadCert(t, c.CA.CertFile)
	for _, tc := range []struct {
		name, file, wantPath, wantCN string
		wantOrg                      []string
	}{
		{"admin", c.AdminKubeconfig, l.KubeconfigAdmin(), "gluebox-admin", []string{"system:masters"}},
		{"supervisor", c.SupervisorKubecfg, filepath.Join(l.KubeconfigDir(), "gluebox.yaml"), "gluebox", []string{"system:masters"}},
		{"controller-manager", c.ControllerKubecfg, filepath.Join(l.KubeconfigDir(), "controller-manager.yaml"), "system:kube-controller-manager", nil},
		{"scheduler", c.SchedulerKubecfg, filepath.Join(l.KubeconfigDir(), "scheduler.yaml"), "system:kube-scheduler", nil},
		{"kubelet", c.KubeletKubecfg, filepath.Join(l.KubeconfigDir(), "kubelet.yaml"), "system:node:node-1", []string{"system:nodes"}},
		{"kube-proxy", c.ProxyKubecfg, filepath.Join(l.KubeconfigDir(), "kube-proxy.yaml"), "system:kube-proxy", nil},
		{"coredns", c.CoreDNSKubecfg, filepath.Join(l.KubeconfigDir(), "coredns.yaml"), "system:gluebox:coredns", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.file != tc.wantPath {
				t.Errorf("kubeconfig path = %q, want %q", tc.file, tc.wantPath)
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", tc.file)
			if err != nil {
				t.Fatalf("clientcmd cannot load %s: %v", tc.file, err)
			}
			if cfg.Host != "https://127.0.0.1:6443" {
				t.Errorf("server = %q", cfg.Host)
			}
			if cfg.TLSClientConfig.CAFile != c.CA.CertFile {
				t.Errorf("CA file = %q, want %q", cfg.TLSClientConfig.CAFile, c.CA.CertFile)
			}
			cert := loadCert(t, cfg.TLSClientConfig.CertFile)
			if _, err := os.Stat(cfg.TLSClientConfig.KeyFile); err != nil {
				t.Errorf("client key: %v", err)
			}
			if cert.Subject.CommonName != tc.wantCN || !slices.Equal(cert.Subject.Organization, tc.wantOrg) {
				t.Errorf("subject = CN %q O %q, want CN %q O %q", cert.Subject.CommonName, cert.Subject.Organization, tc.wantCN, tc.wantOrg)
			}
			if err := cert.CheckSignatureFrom(ca); err != nil {
				t.Errorf("not signed by the cluster CA: %v", err)
			}
			if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
				t.Errorf("client certificate without client auth usage: %v", cert.ExtKeyUsage)
			}
			if st, err := os.Stat(tc.file); err != nil || st.Mode().Perm()&0o077 != 0 {
				t.Errorf("kubeconfig %s must be private: %v %v", tc.file, st.Mode(), err)
			}
		})
	}
	for _, f := range []string{c.ServiceAccountKey, c.ServiceAccountPub, c.EncryptionConfig, c.APIServerKubelet.CertFile, c.KubeletServing.KeyFile} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
}

func TestEnsureCertsAPIServerSANs(t *testing.T) {
	l := testLayout(t)
	c := newTestCerts(t, l, "192.168.1.20")
	cert := loadCert(t, c.APIServer.CertFile)
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, want := range []string{"127.0.0.1", "10.43.0.1", "192.168.1.20"} {
		if !slices.Contains(ips, want) {
			t.Errorf("apiserver cert IPs %v lack %s", ips, want)
		}
	}
	for _, want := range []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", "node-1"} {
		if !slices.Contains(cert.DNSNames, want) {
			t.Errorf("apiserver cert DNS names %v lack %s", cert.DNSNames, want)
		}
	}
	if err := cert.VerifyHostname("10.43.0.1"); err != nil {
		t.Errorf("in-cluster clients cannot verify the apiserver: %v", err)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("apiserver cert lacks server auth: %v", cert.ExtKeyUsage)
	}
	serving := loadCert(t, c.KubeletServing.CertFile)
	if serving.Subject.CommonName != "node-1" || serving.VerifyHostname("192.168.1.20") != nil {
		t.Errorf("kubelet serving cert CN %q IPs %v", serving.Subject.CommonName, serving.IPAddresses)
	}
}

func TestEnsureCertsReusesAndReissues(t *testing.T) {
	l := testLayout(t)
	serials := func(c *Certs) map[string]string {
		t.Helper()
		out := map[string]string{}
		for name, f := range map[string]string{
			"ca": c.CA.CertFile, "apiserver": c.APIServer.CertFile, "kubelet-serving": c.KubeletServing.CertFile,
			"apiserver-kubelet-client": c.APIServerKubelet.CertFile,
		} {
			out[name] = loadCert(t, f).SerialNumber.String()
		}
		for name, f := range map[string]string{"admin": c.AdminKubeconfig, "kubelet": c.KubeletKubecfg} {
			cfg, err := clientcmd.BuildConfigFromFlags("", f)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = loadCert(t, cfg.TLSClientConfig.CertFile).SerialNumber.String()
		}
		return out
	}
	first := serials(newTestCerts(t, l, "192.168.1.20"))
	second := serials(newTestCerts(t, l, "192.168.1.20"))
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("a second EnsureCerts re-issued certificates (-first +second)\n%s", diff)
	}

	moved := newTestCerts(t, l, "192.168.1.99")
	third := serials(moved)
	for _, name := range []string{"apiserver", "kubelet-serving"} {
		if third[name] == first[name] {
			t.Errorf("%s certificate not re-issued after the node IP changed", name)
		}
	}
	for _, name := range []string{"ca", "apiserver-kubelet-client", "admin", "kubelet"} {
		if third[name] != first[name] {
			t.Errorf("%s certificate re-issued although nothing it names changed", name)
		}
	}
	if err := loadCert(t, moved.APIServer.CertFile).VerifyHostname("192.168.1.99"); err != nil {
		t.Errorf("re-issued apiserver cert: %v", err)
	}
}

func TestDefaultArgs(t *testing.T) {
	l := testLayout(t)
	certs := newTestCerts(t, l, "192.168.1.20")
	n := ClusterNetwork{NodeName: "node-1", NodeIP: net.ParseIP("192.168.1.20")}
	n.Defaults()
	ds := NewDatastore(l.DatastoreDir(), "", filepath.Join(l.LogDir(), "kine.log"), slog.New(slog.DiscardHandler))
	pkiDir := l.PKIDir()
	kc := l.KubeconfigDir()
	for _, tc := range []struct {
		name string
		args map[string]string
		want map[string]string
	}{
		{"kube-apiserver", (&APIServer{Certs: certs, Net: n, Datastore: ds}).DefaultArgs(), map[string]string{
			"advertise-address":          "192.168.1.20",
			"bind-address":               "0.0.0.0",
			"secure-port":                "6443",
			"client-ca-file":             filepath.Join(pkiDir, "cluster-ca.crt"),
			"tls-cert-file":              filepath.Join(pkiDir, "apiserver.crt"),
			"tls-private-key-file":       filepath.Join(pkiDir, "apiserver.key"),
			"kubelet-client-certificate": filepath.Join(pkiDir, "apiserver-kubelet-client.crt"),
			"service-account-key-file":   certs.ServiceAccountPub,
			"encryption-provider-config": certs.EncryptionConfig,
			"service-cluster-ip-range":   "10.43.0.0/16",
			"etcd-servers":               "", // kine's endpoint is known only once the datastore runs
			"authorization-mode":         "Node,RBAC",
			"anonymous-auth":             "false",
		}},
		{"kube-apiserver with bind address", (&APIServer{Certs: certs, Net: n, Datastore: ds, BindAddress: "127.0.0.1"}).DefaultArgs(), map[string]string{
			"bind-address": "127.0.0.1",
		}},
		{"kube-controller-manager", (&ControllerManager{Certs: certs, Net: n}).DefaultArgs(), map[string]string{
			"kubeconfig":                       filepath.Join(kc, "controller-manager.yaml"),
			"authentication-kubeconfig":        filepath.Join(kc, "controller-manager.yaml"),
			"cluster-signing-cert-file":        filepath.Join(pkiDir, "cluster-ca.crt"),
			"cluster-signing-key-file":         filepath.Join(pkiDir, "cluster-ca.key"),
			"service-account-private-key-file": certs.ServiceAccountKey,
			"cluster-cidr":                     "10.42.0.0/16",
			"service-cluster-ip-range":         "10.43.0.0/16",
			"bind-address":                     "127.0.0.1",
			"secure-port":                      "10257",
		}},
		{"kube-scheduler", (&Scheduler{Certs: certs}).DefaultArgs(), map[string]string{
			"kubeconfig":               filepath.Join(kc, "scheduler.yaml"),
			"authorization-kubeconfig": filepath.Join(kc, "scheduler.yaml"),
			"bind-address":             "127.0.0.1",
			"secure-port":              "10259",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for k := range tc.want {
				v, ok := tc.args[k]
				if !ok {
					v = "<missing>"
				}
				got[k] = v
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DefaultArgs (-want +got)\n%s", diff)
			}
			for k, v := range tc.args {
				if v == "" && k != "etcd-servers" {
					t.Errorf("flag --%s has an empty default", k)
				}
			}
		})
	}
}

func TestDatastoreEtcdPassThrough(t *testing.T) {
	ep := "https://10.0.0.1:2379,https://10.0.0.2:2379"
	d := NewDatastore(filepath.Join(t.TempDir(), "ds"), ep, "", slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(cancel)
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if err := d.WaitReady(rctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"}, d.Endpoints()); diff != "" {
		t.Errorf("endpoints (-want +got)\n%s", diff)
	}
	if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
		t.Errorf("an etcd datastore must not create the SQLite dir: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestIsEtcdAndRedact(t *testing.T) {
	for _, tc := range []struct {
		ep       string
		etcd     bool
		redacted string
	}{
		{"", false, ""},
		{"http://etcd:2379", true, "http://etcd:2379"},
		{"https://etcd:2379", true, "https://etcd:2379"},
		{"postgres://gluebox:s3cret@db:5432/k8s", false, "postgres://***@db:5432/k8s"},
		{"mysql://root:pw@tcp(db:3306)/k8s", false, "mysql://***@tcp(db:3306)/k8s"},
		{"sqlite:///var/lib/gluebox/state.db", false, "sqlite:///var/lib/gluebox/state.db"},
	} {
		if got := IsEtcd(tc.ep); got != tc.etcd {
			t.Errorf("IsEtcd(%q) = %v, want %v", tc.ep, got, tc.etcd)
		}
		if got := redact(tc.ep); got != tc.redacted {
			t.Errorf("redact(%q) = %q, want %q", tc.ep, got, tc.redacted)
		}
	}
}
