// Package dns runs the cluster DNS of a gluebox node: CoreDNS (built into the bundle) as a
// supervised child on the node's address, answering *.svc.cluster.local from the Kubernetes API
// and forwarding other names to the host's resolvers, and publishes it as the kube-dns Service
// at the tenth service IP. Only the server imports it.
package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/gluebox/gluebox/appliance/kubeutil"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Config configures the cluster DNS.
type Config struct {
	// Binary is the bundled coredns program.
	Binary string
	// Dir holds the Corefile; LogFile receives CoreDNS's output.
	Dir     string
	LogFile string
	// NodeIP is where CoreDNS listens; Port its port (default 10053, so a host resolver on
	// :53 does not collide). The kube-dns Service maps port 53 to it.
	NodeIP net.IP
	Port   int
	// ServiceIP is the cluster DNS address given to pods (the tenth service IP).
	ServiceIP net.IP
	// Kubeconfig is the identity CoreDNS reads the API with.
	Kubeconfig string
	// Upstream is the resolv.conf whose servers answer names outside the cluster.
	Upstream string
}

// DNS runs CoreDNS and keeps the kube-dns Service pointing at it.
type DNS struct {
	cfg   Config
	child *supervise.Child
	log   *slog.Logger
}

// New writes the Corefile and returns the component.
func New(cfg Config, log *slog.Logger) (*DNS, error) {
	if cfg.Port == 0 {
		cfg.Port = 10053
	}
	if cfg.Upstream == "" {
		cfg.Upstream = "/etc/resolv.conf"
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	corefile := filepath.Join(cfg.Dir, "Corefile")
	if err := os.WriteFile(corefile, []byte(Corefile(cfg)), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write Corefile: %w", err)
	}
	addr := net.JoinHostPort(cfg.NodeIP.String(), strconv.Itoa(cfg.Port))
	d := &DNS{cfg: cfg, log: log}
	d.child = supervise.NewChild(supervise.ChildConfig{
		Name:    "coredns",
		Path:    cfg.Binary,
		Args:    []string{"-conf", corefile},
		Env:     []string{"HOME=/root"},
		Dir:     cfg.Dir,
		LogFile: cfg.LogFile,
		Ready: func(ctx context.Context) error {
			var dl net.Dialer
			c, err := dl.DialContext(ctx, "tcp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		},
	}, log)
	return d, nil
}

// Corefile returns CoreDNS's configuration for cfg.
func Corefile(cfg Config) string {
	return fmt.Sprintf(`.:%[1]d {
    bind %[2]s
    errors
    ready %[2]s:%[3]d
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %[4]s
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    forward . %[5]s
    cache 30
    loadbalance
}
`, cfg.Port, cfg.NodeIP, cfg.Port+1, cfg.Kubeconfig, cfg.Upstream)
}

// Name implements supervise.Component.
func (d *DNS) Name() string { return "coredns" }

// Run implements supervise.Component.
func (d *DNS) Run(ctx context.Context) error { return d.child.Run(ctx) }

// WaitReady implements supervise.Component.
func (d *DNS) WaitReady(ctx context.Context) error {
	select {
	case <-d.child.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State reports the child's state for `gluebox status`.
func (d *DNS) State() supervise.ChildState { return d.child.State() }

// Publish creates or updates the RBAC CoreDNS needs and the kube-dns Service whose endpoint is
// CoreDNS on the node. It is safe to call at every start.
func (d *DNS) Publish(ctx context.Context, cs kubernetes.Interface) error {
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: "system:gluebox:coredns"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: "system:gluebox:coredns"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "system:gluebox:coredns"}},
	}
	rbac := cs.RbacV1().RESTClient()
	if err := kubeutil.Apply(ctx, rbac, "clusterroles", "", role.Name, role); err != nil {
		return err
	}
	if err := kubeutil.Apply(ctx, rbac, "clusterrolebindings", "", binding.Name, binding); err != nil {
		return err
	}
	labels := map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "app.kubernetes.io/managed-by": "gluebox"}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system", Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: d.cfg.ServiceIP.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt(d.cfg.Port)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt(d.cfg.Port)},
			},
		},
	}
	if err := kubeutil.Apply(ctx, cs.CoreV1().RESTClient(), "services", "kube-system", svc.Name, svc); err != nil {
		return err
	}
	port := int32(d.cfg.Port)
	slice := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-gluebox", Namespace: "kube-system", Labels: map[string]string{
			discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: "gluebox"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{d.cfg.NodeIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("dns"), Port: &port, Protocol: ptr.To(corev1.ProtocolUDP)},
			{Name: ptr.To("dns-tcp"), Port: &port, Protocol: ptr.To(corev1.ProtocolTCP)},
		},
	}
	return kubeutil.Apply(ctx, cs.DiscoveryV1().RESTClient(), "endpointslices", "kube-system", slice.Name, slice)
}
