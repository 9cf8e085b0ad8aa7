package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// defaultResolver makes newHarness use the EndpointSlice resolver instead of the test one.
func defaultResolver(c *Config) { c.Resolve = nil }

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Ports: ports}}
}

// Endpoint conditions as the EndpointSlice controller writes them for a pod's life.
var (
	condReady    = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	condUnset    = discoveryv1.EndpointConditions{} // nil ready and serving mean true, nil terminating false
	condNotReady = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)}
	condDraining = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	condStopping = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)}
	// Ready but terminating happens with publishNotReadyAddresses; it is still not picked first.
	condReadyTerminating = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(true)}
)

func ep(addr string, c discoveryv1.EndpointConditions) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: c}
}

func tcpPort(name string, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}
}

// endpointSlice is slice name of Service ns/svc; its address type follows the first endpoint.
func endpointSlice(ns, svc, name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	at := discoveryv1.AddressTypeIPv4
	if len(eps) > 0 && strings.Contains(eps[0].Addresses[0], ":") {
		at = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: at, Ports: ports, Endpoints: eps,
	}
}

// startPod starts an echo server answering as name and returns its port; in the tests every pod
// is 127.0.0.1, so each one gets its own EndpointSlice (a slice has one number per port name).
func startPod(t *testing.T, name string) int32 {
	t.Helper()
	s := httptest.NewServer(echo(name))
	t.Cleanup(s.Close)
	return int32(s.Listener.Addr().(*net.TCPAddr).Port)
}

// podSlice is an EndpointSlice of Service ns/svc's single unnamed port listing one local pod.
func podSlice(ns, svc, name string, port int32, c discoveryv1.EndpointConditions) *discoveryv1.EndpointSlice {
	return endpointSlice(ns, svc, name, []discoveryv1.EndpointPort{tcpPort("", port)}, ep("127.0.0.1", c))
}

func byNumber(n int32) networkingv1.ServiceBackendPort {
	return networkingv1.ServiceBackendPort{Number: n}
}
func byName(n string) networkingv1.ServiceBackendPort {
	return networkingv1.ServiceBackendPort{Name: n}
}

func TestPickEndpoint(t *testing.T) {
	web := service("app", "web",
		corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "metrics", Port: 9090},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
	v6 := service("app", "v6", corev1.ServicePort{Port: 80})
	v6.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	dual := service("app", "dual", corev1.ServicePort{Port: 80})
	dual.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	external := service("app", "external", corev1.ServicePort{Port: 80})
	external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeExternalName, "localhost"
	unlabeled := endpointSlice("app", "web", "stray", []discoveryv1.EndpointPort{tcpPort("http", 8080)}, ep("10.42.9.9", condReady))
	unlabeled.Labels = nil
	fqdn := endpointSlice("app", "web", "web-fqdn", []discoveryv1.EndpointPort{tcpPort("http", 8080)}, ep("pod.example.com", condReady))
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	noName := tcpPort("", 80)
	noName.Name = nil

	h := newHarness(t, defaultResolver,
		web, v6, dual, external,
		service("app", "single", corev1.ServicePort{Port: 8080, TargetPort: intstr.FromInt32(3000)}),
		service("app", "draining", corev1.ServicePort{Port: 80}),
		service("app", "unready", corev1.ServicePort{Port: 80}),
		service("app", "empty", corev1.ServicePort{Port: 80}),
		endpointSlice("app", "web", "web-a", []discoveryv1.EndpointPort{tcpPort("http", 8080), tcpPort("metrics", 9100)},
			ep("10.42.0.1", condReady), ep("10.42.0.2", condUnset), ep("10.42.0.3", condNotReady),
			ep("10.42.0.4", condReadyTerminating), ep("10.42.0.5", condDraining), ep("10.42.0.6", condStopping)),
		// Pods behind the named targetPort "web" that listen on another number.
		endpointSlice("app", "web", "web-b", []discoveryv1.EndpointPort{tcpPort("http", 8081)}, ep("10.42.1.1", condReady)),
		fqdn, unlabeled,
		endpointSlice("app", "other", "other-a", []discoveryv1.EndpointPort{tcpPort("http", 8080)}, ep("10.42.8.1", condReady)),
		endpointSlice("elsewhere", "web", "web-a", []discoveryv1.EndpointPort{tcpPort("http", 8080)}, ep("10.42.8.2", condReady)),
		endpointSlice("app", "single", "single-a", []discoveryv1.EndpointPort{tcpPort("", 3000)}, ep("10.42.4.1", condReady)),
		endpointSlice("app", "v6", "v6-a", []discoveryv1.EndpointPort{noName}, ep("fd00:42::1", condReady), ep("fd00:42::2", condReady)),
		endpointSlice("app", "dual", "dual-4", []discoveryv1.EndpointPort{tcpPort("", 80)}, ep("10.42.2.1", condReady)),
		endpointSlice("app", "dual", "dual-6", []discoveryv1.EndpointPort{tcpPort("", 80)}, ep("fd00:42::3", condReady)),
		endpointSlice("app", "draining", "draining-a", []discoveryv1.EndpointPort{tcpPort("", 80)},
			ep("10.42.3.1", condDraining), ep("10.42.3.2", condStopping), ep("10.42.3.3", condNotReady), ep("10.42.3.4", condDraining)),
		endpointSlice("app", "unready", "unready-a", []discoveryv1.EndpointPort{tcpPort("", 80)}, ep("10.42.5.1", condNotReady), ep("10.42.5.2", condStopping)),
	)

	for _, tc := range []struct {
		svc     string
		port    networkingv1.ServiceBackendPort
		want    []string // picked equally often
		wantErr string
	}{
		{"web", byNumber(80), []string{"10.42.0.1:8080", "10.42.0.2:8080", "10.42.1.1:8081"}, ""},
		{"web", byName("http"), []string{"10.42.0.1:8080", "10.42.0.2:8080", "10.42.1.1:8081"}, ""},
		{"web", byName("metrics"), []string{"10.42.0.1:9100", "10.42.0.2:9100"}, ""},
		{"single", byNumber(8080), []string{"10.42.4.1:3000"}, ""},
		{"v6", byNumber(80), []string{"[fd00:42::1]:80", "[fd00:42::2]:80"}, ""},
		{"dual", byNumber(80), []string{"[fd00:42::3]:80"}, ""},
		{"draining", byNumber(80), []string{"10.42.3.1:80", "10.42.3.4:80"}, ""},
		{"unready", byNumber(80), nil, "no ready endpoints for Service app/unready"},
		{"empty", byNumber(80), nil, "no ready endpoints for Service app/empty"},
		{"web", byNumber(81), nil, "service app/web has no port 81"},
		{"web", byName("grpc"), nil, "service app/web has no port grpc"},
		{"web", byName("dns"), nil, "is UDP, not TCP"},
		{"external", byNumber(80), nil, "ExternalName"},
		{"missing", byNumber(80), nil, "service app/missing does not exist"},
	} {
		b := &backend{namespace: "app", service: tc.svc, port: tc.port}
		if tc.wantErr != "" {
			got, err := h.fd.endpoints.pick(b, "")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("pick(%s, %s) = %q, %v; want an error containing %q", tc.svc, portString(tc.port), got, err, tc.wantErr)
			}
			var none *noEndpointsError
			if errors.As(err, &none) != strings.HasPrefix(tc.wantErr, "no ready endpoints") {
				t.Errorf("pick(%s, %s): error %v is a *noEndpointsError: %v", tc.svc, portString(tc.port), err, none != nil)
			}
			continue
		}
		const rounds = 4
		want, got := map[string]int{}, map[string]int{}
		for _, a := range tc.want {
			want[a] = rounds
		}
		for range rounds * len(tc.want) {
			a, err := h.fd.endpoints.pick(b, "")
			if err != nil {
				t.Fatalf("pick(%s, %s): %v", tc.svc, portString(tc.port), err)
			}
			got[a]++
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pick(%s, %s) picked (-want +got):\n%s", tc.svc, portString(tc.port), diff)
		}
	}

	// A retry avoids the endpoint that failed, unless it is the only one.
	b := &backend{namespace: "app", service: "web", port: byNumber(80)}
	for range 6 {
		if a, err := h.fd.endpoints.pick(b, "10.42.0.2:8080"); err != nil || a == "10.42.0.2:8080" {
			t.Fatalf("pick avoiding 10.42.0.2:8080 = %q, %v", a, err)
		}
	}
	if a, err := h.fd.endpoints.pick(&backend{namespace: "app", service: "single", port: byNumber(8080)}, "10.42.4.1:3000"); err == nil {
		t.Errorf("pick avoiding the only endpoint = %q; want no endpoint", a)
	}
}

func BenchmarkPickEndpoint(b *testing.B) {
	var eps []discoveryv1.Endpoint
	for i := range 10 {
		eps = append(eps, ep(fmt.Sprintf("10.42.0.%d", i+1), condReady))
	}
	cs := fake.NewClientset(service("app", "web", corev1.ServicePort{Name: "http", Port: 80}),
		endpointSlice("app", "web", "web-a", []discoveryv1.EndpointPort{tcpPort("http", 8080)}, eps...))
	fd, err := New(Config{Client: cs})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fd.Run(ctx)
	if err := fd.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	be := &backend{namespace: "app", service: "web", port: byNumber(80)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fd.endpoints.pick(be, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRequestsSpreadOverReadyPods(t *testing.T) {
	objs := []runtime.Object{
		service("app", "web", corev1.ServicePort{Port: 80}),
		newIngress("app", "web", 1, rule("app.example.com", prefix("/", "web"))),
	}
	for _, pod := range []struct {
		name string
		cond discoveryv1.EndpointConditions
	}{
		{"a", condReady}, {"b", condUnset}, {"c", condReady},
		{"not-ready", condNotReady}, {"ready-terminating", condReadyTerminating}, {"draining", condDraining}, {"stopping", condStopping},
	} {
		objs = append(objs, podSlice("app", "web", "web-"+pod.name, startPod(t, pod.name), pod.cond))
	}
	h := newHarness(t, defaultResolver, objs...)
	got := map[string]int{}
	for range 30 {
		got[h.get("app.example.com", "/").servedBy()]++
	}
	if diff := cmp.Diff(map[string]int{"a": 10, "b": 10, "c": 10}, got); diff != "" {
		t.Errorf("requests per pod (-want +got):\n%s", diff)
	}
}

func TestNamedTargetPorts(t *testing.T) {
	named := func(svc, port string) networkingv1.HTTPIngressPath {
		return networkingv1.HTTPIngressPath{Path: "/" + port, PathType: ptr.To(networkingv1.PathTypePrefix),
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: byName(port)}}}
	}
	ing := newIngress("app", "web", 1, rule("app.example.com",
		named("web", "http"), named("web", "admin"), withPathType(networkingv1.PathTypePrefix, "/", "web", 80)))
	// Both pods name their container port "web" but listen on different numbers; the admin port
	// of pod one is another server.
	one, two, admin := startPod(t, "one"), startPod(t, "two"), startPod(t, "one-admin")
	h := newHarness(t, defaultResolver, ing,
		service("app", "web",
			corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("web")},
			corev1.ServicePort{Name: "admin", Port: 81, TargetPort: intstr.FromString("admin")}),
		endpointSlice("app", "web", "web-1", []discoveryv1.EndpointPort{tcpPort("http", one), tcpPort("admin", admin)}, ep("127.0.0.1", condReady)),
		endpointSlice("app", "web", "web-2", []discoveryv1.EndpointPort{tcpPort("http", two)}, ep("127.0.0.1", condReady)))
	for _, tc := range []struct {
		path string
		want map[string]int
	}{
		{"/http", map[string]int{"one": 2, "two": 2}},
		{"/", map[string]int{"one": 2, "two": 2}}, // port 80 by number is the port named http
		{"/admin", map[string]int{"one-admin": 4}},
	} {
		got := map[string]int{}
		for range 4 {
			got[h.get("app.example.com", tc.path).servedBy()]++
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("GET %s: requests per pod (-want +got):\n%s", tc.path, diff)
		}
	}
}

// TestRollout walks a Service through a rollout and checks each step is served as soon as the
// EndpointSlices say so.
func TestRollout(t *testing.T) {
	oldPort, newPort := startPod(t, "old"), startPod(t, "new")
	h := newHarness(t, defaultResolver,
		service("app", "web", corev1.ServicePort{Port: 80}),
		newIngress("app", "web", 1, rule("app.example.com", prefix("/", "web"))),
		podSlice("app", "web", "web-old", oldPort, condReady))
	ctx := context.Background()
	api := h.cs.DiscoveryV1().EndpointSlices("app")
	apply := func(s *discoveryv1.EndpointSlice) {
		t.Helper()
		_, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			_, err = api.Create(ctx, s, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// servedOnlyBy holds when the next few requests all reach want.
	servedOnlyBy := func(want string) func() bool {
		return func() bool {
			for range 4 {
				if h.get("app.example.com", "/").servedBy() != want {
					return false
				}
			}
			return true
		}
	}
	if got := h.get("app.example.com", "/").servedBy(); got != "old" {
		t.Fatalf("before the rollout: served by %s, want old", got)
	}

	// The new pod is ready and the old one terminates: only the new one gets requests.
	apply(podSlice("app", "web", "web-new", newPort, condReady))
	apply(podSlice("app", "web", "web-old", oldPort, condDraining))
	waitFor(t, "the new pod to take all requests", servedOnlyBy("new"))

	// The new pod fails its readiness probe: the draining old one still answers.
	apply(podSlice("app", "web", "web-new", newPort, condNotReady))
	waitFor(t, "the draining pod to answer", servedOnlyBy("old"))

	// The old pod is gone too: 503, and the client is told to come back.
	if err := api.Delete(ctx, "web-old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "503 without pods", servedOnlyBy("503"))
	r := h.get("app.example.com", "/")
	if r.body != "gluebox: no ready endpoints for Service app/web\n" || r.header.Get("Retry-After") != "1" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("no pods: %d %q Retry-After %q; want 503 naming the Service, Retry-After 1", r.status, r.body, r.header.Get("Retry-After"))
	}

	apply(podSlice("app", "web", "web-new", newPort, condReady))
	waitFor(t, "the recovered pod to answer", servedOnlyBy("new"))
}

func TestDeadEndpointIsRetriedForIdempotentRequests(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	deadPort := int32(gone.Listener.Addr().(*net.TCPAddr).Port)
	gone.Close() // the pod died; its EndpointSlice does not say so yet
	h := newHarness(t, defaultResolver,
		service("app", "web", corev1.ServicePort{Port: 80}),
		service("app", "lonely", corev1.ServicePort{Port: 80}),
		newIngress("app", "web", 1, rule("app.example.com", prefix("/", "web")), rule("lonely.example.com", prefix("/", "lonely"))),
		podSlice("app", "web", "web-dead", deadPort, condReady),
		podSlice("app", "web", "web-live", startPod(t, "live"), condReady),
		podSlice("app", "lonely", "lonely-dead", deadPort, condReady))

	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		for range 4 {
			if r := h.send(method, "app.example.com", "/", ""); r.status != http.StatusOK {
				t.Errorf("%s: %d %q; want 200 from the live pod after a retry", method, r.status, r.body)
			}
		}
	}
	if !strings.Contains(h.logs.String(), "retrying on another") {
		t.Errorf("the retry was not logged:\n%s", h.logs.String())
	}

	// Requests with a body, or that are not idempotent, are not sent twice: round-robin sends
	// every other one to the dead pod, and those fail.
	for _, tc := range []struct{ method, body string }{
		{http.MethodPost, "order=1"}, {http.MethodPost, ""}, {http.MethodDelete, ""}, {http.MethodGet, "body"},
	} {
		got := map[string]int{}
		for range 4 {
			r := h.send(tc.method, "app.example.com", "/", tc.body)
			if r.status == http.StatusBadGateway && !strings.Contains(r.body, "refused the connection") {
				t.Errorf("%s with body %q: 502 %q; want it to say the connection was refused", tc.method, tc.body, r.body)
			}
			got[r.servedBy()]++
		}
		if diff := cmp.Diff(map[string]int{"live": 2, "502": 2}, got); diff != "" {
			t.Errorf("%s with body %q: answers (-want +got):\n%s", tc.method, tc.body, diff)
		}
	}

	// With no other endpoint, a GET fails as before.
	if r := h.get("lonely.example.com", "/"); r.status != http.StatusBadGateway || !strings.Contains(r.body, "Service app/lonely port 80, refused the connection") {
		t.Errorf("GET with only a dead pod: %d %q; want 502 saying the connection was refused", r.status, r.body)
	}
}

func TestDefaultResolverErrors(t *testing.T) {
	h := newHarness(t, defaultResolver, newIngress("app", "web", 1, rule("app.example.com", prefix("/", "missing"))))
	r := h.get("app.example.com", "/")
	if r.status != http.StatusBadGateway || !strings.Contains(r.body, "service app/missing does not exist") {
		t.Errorf("request to a missing Service: %d %q; want 502 saying so", r.status, r.body)
	}
}
