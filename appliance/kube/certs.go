package kube

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/pki"
)

// Certs holds the paths of every certificate, key and kubeconfig the cluster uses.
type Certs struct {
	CA                *pki.CA
	APIServer         pki.Pair
	APIServerKubelet  pki.Pair
	KubeletServing    pki.Pair
	ServiceAccountKey string
	ServiceAccountPub string
	EncryptionConfig  string
	AdminKubeconfig   string
	ControllerKubecfg string
	SchedulerKubecfg  string
	KubeletKubecfg    string
	ProxyKubecfg      string
	CoreDNSKubecfg    string
	SupervisorKubecfg string
}

// ClusterNetwork is the address plan of the cluster.
type ClusterNetwork struct {
	// NodeName and NodeIP identify this node.
	NodeName string
	NodeIP   net.IP
	// APIPort is the apiserver's secure port (default 6443).
	APIPort int
	// ServiceCIDR is the service range (default 10.43.0.0/16); ClusterCIDR the pod range
	// (default 10.42.0.0/16); the first service IP is the apiserver's, the tenth the DNS.
	ServiceCIDR string
	ClusterCIDR string
}

// Defaults fills in the documented defaults.
func (n *ClusterNetwork) Defaults() {
	if n.APIPort == 0 {
		n.APIPort = 6443
	}
	if n.ServiceCIDR == "" {
		n.ServiceCIDR = "10.43.0.0/16"
	}
	if n.ClusterCIDR == "" {
		n.ClusterCIDR = "10.42.0.0/16"
	}
}

// ServiceIP returns the n-th address of the service range (1 = apiserver, 10 = DNS).
func (n ClusterNetwork) ServiceIP(i byte) (net.IP, error) {
	_, cidr, err := net.ParseCIDR(n.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("service CIDR %q: %w", n.ServiceCIDR, err)
	}
	ip := cidr.IP.To4()
	if ip == nil {
		return nil, fmt.Errorf("service CIDR %q: only IPv4 is supported", n.ServiceCIDR)
	}
	out := make(net.IP, 4)
	copy(out, ip)
	out[3] += i
	return out, nil
}

// EnsureCerts creates or refreshes the cluster's PKI under the data dir.
func EnsureCerts(l paths.Layout, n ClusterNetwork) (*Certs, error) {
	dir := l.PKIDir()
	ca, err := pki.EnsureCA(dir, "cluster-ca")
	if err != nil {
		return nil, err
	}
	apiIP, err := n.ServiceIP(1)
	if err != nil {
		return nil, err
	}
	hostname, _ := os.Hostname()
	dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost", n.NodeName}
	if hostname != "" && hostname != n.NodeName {
		dns = append(dns, hostname)
	}
	ips := []net.IP{net.ParseIP("127.0.0.1").To4(), apiIP.To4(), n.NodeIP.To4()}
	c := &Certs{CA: ca}
	if c.APIServer, err = ca.Ensure(dir, "apiserver", pki.Spec{CommonName: "kube-apiserver", DNSNames: dns, IPs: ips, Usage: pki.Server}); err != nil {
		return nil, err
	}
	if c.APIServerKubelet, err = ca.Ensure(dir, "apiserver-kubelet-client", pki.Spec{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Usage: pki.Client}); err != nil {
		return nil, err
	}
	if c.KubeletServing, err = ca.Ensure(dir, "kubelet-serving", pki.Spec{CommonName: n.NodeName, DNSNames: []string{n.NodeName, "localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1").To4(), n.NodeIP.To4()}, Usage: pki.Server}); err != nil {
		return nil, err
	}
	if c.ServiceAccountKey, c.ServiceAccountPub, err = pki.EnsureSigningKey(dir, "service-account"); err != nil {
		return nil, err
	}
	if c.EncryptionConfig, err = pki.EnsureEncryptionConfig(dir); err != nil {
		return nil, err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", n.APIPort)
	kcDir := l.KubeconfigDir()
	clients := []struct {
		file *string
		name string
		spec pki.Spec
	}{
		{&c.AdminKubeconfig, "admin", pki.Spec{CommonName: "gluebox-admin", Organization: []string{"system:masters"}, Usage: pki.Client}},
		{&c.SupervisorKubecfg, "gluebox", pki.Spec{CommonName: "gluebox", Organization: []string{"system:masters"}, Usage: pki.Client}},
		{&c.ControllerKubecfg, "controller-manager", pki.Spec{CommonName: "system:kube-controller-manager", Usage: pki.Client}},
		{&c.SchedulerKubecfg, "scheduler", pki.Spec{CommonName: "system:kube-scheduler", Usage: pki.Client}},
		{&c.KubeletKubecfg, "kubelet", pki.Spec{CommonName: "system:node:" + n.NodeName, Organization: []string{"system:nodes"}, Usage: pki.Client}},
		{&c.ProxyKubecfg, "kube-proxy", pki.Spec{CommonName: "system:kube-proxy", Usage: pki.Client}},
		{&c.CoreDNSKubecfg, "coredns", pki.Spec{CommonName: "system:gluebox:coredns", Usage: pki.Client}},
	}
	for _, cl := range clients {
		pair, err := ca.Ensure(filepath.Join(dir, "clients"), cl.name, cl.spec)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(kcDir, cl.name+".yaml")
		if cl.name == "admin" {
			path = l.KubeconfigAdmin()
		}
		if err := pki.WriteKubeconfig(path, server, ca, pair); err != nil {
			return nil, fmt.Errorf("cannot write kubeconfig %s: %w", path, err)
		}
		*cl.file = path
	}
	return c, nil
}
