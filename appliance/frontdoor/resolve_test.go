package frontdoor

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports}}
}

func TestDefaultResolverUsesClusterIP(t *testing.T) {
	external := service("app", "external", "")
	external.Spec.Type = corev1.ServiceTypeExternalName
	external.Spec.ExternalName = "localhost"
	h := newHarness(t, func(c *Config) { c.Resolve = nil },
		service("app", "web", "10.43.0.20",
			corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			corev1.ServicePort{Name: "metrics", Port: 9090}),
		service("app", "v6", "fd00:43::20", corev1.ServicePort{Port: 8080}),
		service("app", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
		service("app", "dns", "10.43.0.30", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		external,
		newIngress("app", "web", 1, rule("app.example.com", prefix("/", "missing"))),
	)
	byNumber := func(n int32) networkingv1.ServiceBackendPort { return networkingv1.ServiceBackendPort{Number: n} }
	byName := func(n string) networkingv1.ServiceBackendPort { return networkingv1.ServiceBackendPort{Name: n} }
	for _, tc := range []struct {
		svc     string
		port    networkingv1.ServiceBackendPort
		want    string
		wantErr string
	}{
		{"web", byNumber(80), "10.43.0.20:80", ""},
		{"web", byName("http"), "10.43.0.20:80", ""},
		{"web", byName("metrics"), "10.43.0.20:9090", ""},
		{"v6", byNumber(8080), "[fd00:43::20]:8080", ""},
		{"web", byNumber(81), "", "service app/web has no port 81"},
		{"web", byName("grpc"), "", "service app/web has no port grpc"},
		{"headless", byNumber(80), "", "has no cluster IP"},
		{"dns", byName("dns"), "", "is UDP, not TCP"},
		{"external", byNumber(80), "", "ExternalName"},
		{"missing", byNumber(80), "", "service app/missing does not exist"},
	} {
		got, err := h.fd.resolve(context.Background(), "app", tc.svc, tc.port)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("resolve(%s, %s) = %q, %v; want an error containing %q", tc.svc, portString(tc.port), got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolve(%s, %s) = %q, %v; want %q", tc.svc, portString(tc.port), got, err, tc.want)
		}
	}

	// Through the handler, a missing Service is a 502 that says so.
	r := h.get("app.example.com", "/")
	if r.status != 502 || !strings.Contains(r.body, "service app/missing does not exist") {
		t.Errorf("request to a missing Service: %d %q", r.status, r.body)
	}
}
