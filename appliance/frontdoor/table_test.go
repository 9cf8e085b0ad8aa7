package frontdoor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/gluebox/gluebox/appliance/internal/golden"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// newIngress builds an Ingress created minute minutes after epoch.
func newIngress(ns, name string, minute int, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(minute) * time.Minute))},
		Spec:       networkingv1.IngressSpec{Rules: rules},
	}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	r := networkingv1.IngressRule{Host: host}
	if len(paths) > 0 {
		r.HTTP = &networkingv1.HTTPIngressRuleValue{Paths: paths}
	}
	return r
}

func svcBackend(svc string, port int32) networkingv1.IngressBackend {
	return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: port}}}
}

func withPathType(pt networkingv1.PathType, p, svc string, port int32) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: ptr.To(pt), Backend: svcBackend(svc, port)}
}

func prefix(p, svc string) networkingv1.HTTPIngressPath {
	return withPathType(networkingv1.PathTypePrefix, p, svc, 80)
}

func exact(p, svc string) networkingv1.HTTPIngressPath {
	return withPathType(networkingv1.PathTypeExact, p, svc, 80)
}

// fixtureIngresses exercise every translation rule; testdata/routes.golden is what they become.
func fixtureIngresses() []*networkingv1.Ingress {
	web := newIngress("shop-prod", "web", 10,
		rule("shop.example.com", prefix("/", "web"), prefix("/api/", "api"), exact("/healthz", "health"),
			networkingv1.HTTPIngressPath{Path: "/static", PathType: ptr.To(networkingv1.PathTypeImplementationSpecific), Backend: svcBackend("static", 8080)}),
		rule("*.preview.example.com", prefix("/", "preview")))
	web.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"shop.example.com"}, SecretName: "shop-tls"}}
	web.Annotations = map[string]string{ForceSSLRedirectAnnotation: "true"}

	named := newIngress("shop-prod", "named-port", 11, rule("shop.example.com",
		networkingv1.HTTPIngressPath{Path: "/metrics", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Name: "metrics"}}}}))

	// Newer than web, so it loses /api; its other path is still served.
	thief := newIngress("other", "thief", 20, rule("shop.example.com", prefix("/api", "evil"), exact("/other", "other")))
	thief.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "thief-tls"}} // web's Secret stays in front of the host

	catchAll := newIngress("ops", "catch-all", 5, rule("", prefix("/status", "status")))
	catchAll.Spec.DefaultBackend = ptr.To(svcBackend("fallback", 80))
	laterDefault := newIngress("ops", "later-default", 6)
	laterDefault.Spec.DefaultBackend = ptr.To(svcBackend("other-fallback", 80))

	resource := newIngress("assets", "bucket", 30, rule("assets.example.com", networkingv1.HTTPIngressPath{
		Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix),
		Backend: networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "StorageBucket", Name: "static"}}}))

	nginx := newIngress("legacy", "nginx-class", 1, rule("nginx.example.com", prefix("/", "x")))
	nginx.Spec.IngressClassName = ptr.To("nginx")
	legacyAnnot := newIngress("legacy", "nginx-annotation", 1, rule("nginx2.example.com", prefix("/", "x")))
	legacyAnnot.Annotations = map[string]string{legacyClassAnnotation: "nginx"}
	ours := newIngress("mine", "gluebox-class", 40, rule("mine.example.com", prefix("/", "mine")))
	ours.Spec.IngressClassName = ptr.To(IngressClass)

	bad := newIngress("broken", "bad", 50,
		rule("Bad_Host!", prefix("/", "x")),
		rule("bad.example.com", networkingv1.HTTPIngressPath{Path: "relative", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: svcBackend("x", 80)},
			withPathType(networkingv1.PathTypePrefix, "/noport", "x", 0),
			prefix("/ok", "ok")))
	return []*networkingv1.Ingress{thief, bad, web, named, catchAll, laterDefault, resource, nginx, legacyAnnot, ours}
}

func TestBuildTableGolden(t *testing.T) {
	tb := buildTable(fixtureIngresses())
	out, err := json.MarshalIndent(struct {
		Routes   []Route  `json:"routes"`
		Problems []string `json:"problems"`
	}{tb.routes, tb.problems}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "routes.golden", append(out, '\n'))
}

func TestBuildTableIsDeterministic(t *testing.T) {
	ings := fixtureIngresses()
	want := buildTable(ings)
	for i := range 5 {
		// Lister order is arbitrary: reverse and rotate it.
		shuffled := make([]*networkingv1.Ingress, 0, len(ings))
		for j := range ings {
			shuffled = append(shuffled, ings[(len(ings)-1-j+i)%len(ings)])
		}
		got := buildTable(shuffled)
		if diff := cmp.Diff(want.routes, got.routes); diff != "" {
			t.Fatalf("routes depend on input order (-first +now):\n%s", diff)
		}
		if diff := cmp.Diff(want.problems, got.problems); diff != "" {
			t.Fatalf("problems depend on input order (-first +now):\n%s", diff)
		}
	}
}

func TestLookup(t *testing.T) {
	tb := buildTable(fixtureIngresses())
	for _, tc := range []struct {
		host, path string
		want       string // "namespace/service", or "" for no backend
		known      bool
	}{
		{"shop.example.com", "/", "shop-prod/web", true},
		{"shop.example.com", "/cart", "shop-prod/web", true},
		{"shop.example.com", "/api", "shop-prod/api", true},
		{"shop.example.com", "/api/", "shop-prod/api", true},
		{"shop.example.com", "/api/v1/items", "shop-prod/api", true},
		{"shop.example.com", "/apiary", "shop-prod/web", true},           // prefixes match whole path elements
		{"shop.example.com", "/healthz", "shop-prod/health", true},       // exact
		{"shop.example.com", "/healthz/deep", "shop-prod/web", true},     // exact is not a prefix
		{"shop.example.com", "/static/app.js", "shop-prod/static", true}, // ImplementationSpecific = Prefix
		{"shop.example.com", "/metrics", "shop-prod/web", true},          // named port backend
		{"shop.example.com", "/other", "other/other", true},              // the loser of a conflict keeps its other paths
		{"shop.example.com", "/status", "shop-prod/web", true},           // the exact host's "/" beats the host-less rule
		{"pr-7.preview.example.com", "/x", "shop-prod/preview", true},    // wildcard
		{"a.pr-7.preview.example.com", "/", "ops/fallback", true},        // a wildcard covers exactly one label
		{"preview.example.com", "/", "ops/fallback", true},               // ... and not the bare suffix
		{"unknown.example.com", "/status", "ops/status", true},           // host-less rule
		{"unknown.example.com", "/", "ops/fallback", true},               // default backend
		{"nginx.example.com", "/", "ops/fallback", true},                 // other class: not served
		{"mine.example.com", "/", "mine/mine", true},                     // ingressClassName gluebox
		{"bad.example.com", "/ok", "broken/ok", true},                    // a bad path does not spoil the rule
		{"assets.example.com", "/logo.png", "assets/StorageBucket/static", true},
	} {
		b, known := tb.lookup(tc.host, tc.path)
		got := ""
		if b != nil {
			got = b.namespace + "/" + b.service
			if b.resource != "" {
				got = b.namespace + "/" + b.resource
			}
		}
		if got != tc.want || known != tc.known {
			t.Errorf("lookup(%s, %s) = %q, known %v; want %q, known %v", tc.host, tc.path, got, known, tc.want, tc.known)
		}
	}

	// Without host-less rules or a default backend, an unknown host is unknown.
	small := buildTable([]*networkingv1.Ingress{newIngress("a", "a", 0, rule("a.example.com", exact("/only", "a")))})
	if b, known := small.lookup("b.example.com", "/only"); b != nil || known {
		t.Errorf("unknown host: got backend %v, known %v", b, known)
	}
	if b, known := small.lookup("a.example.com", "/other"); b != nil || !known {
		t.Errorf("known host, unknown path: got backend %v, known %v", b, known)
	}
}

func TestConflictsResolveByAgeThenName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ings   []*networkingv1.Ingress
		winner string
	}{
		{"older wins over name order", []*networkingv1.Ingress{
			newIngress("a", "first-by-name", 5, rule("x.example.com", prefix("/", "newer"))),
			newIngress("z", "last-by-name", 1, rule("x.example.com", prefix("/", "older"))),
		}, "z/older"},
		{"same age: namespace/name order", []*networkingv1.Ingress{
			newIngress("b", "app", 1, rule("x.example.com", prefix("/", "second"))),
			newIngress("a", "app", 1, rule("x.example.com", prefix("/", "first"))),
		}, "a/first"},
		{"trailing slash is the same prefix", []*networkingv1.Ingress{
			newIngress("b", "app", 2, rule("x.example.com", prefix("/", "second"))),
			newIngress("a", "app", 1, rule("x.example.com", networkingv1.HTTPIngressPath{Path: "/", Backend: svcBackend("first", 80)})),
		}, "a/first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := buildTable(tc.ings)
			b, _ := tb.lookup("x.example.com", "/")
			if got := b.namespace + "/" + b.service; got != tc.winner {
				t.Errorf("winner = %s, want %s", got, tc.winner)
			}
			if len(tb.problems) != 1 || !strings.Contains(tb.problems[0], "conflict") {
				t.Errorf("problems = %q, want one conflict", tb.problems)
			}
		})
	}
}

func TestTLSSecretOnlyForOwnHosts(t *testing.T) {
	a := newIngress("a", "a", 1, rule("a.example.com", prefix("/", "a")), rule("*.wild.example.com", prefix("/", "w")))
	a.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"*.wild.example.com"}, SecretName: "wild-tls"}}
	// b claims a certificate for a host it does not route.
	b := newIngress("b", "b", 0, rule("b.example.com", prefix("/", "b")))
	b.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example.com", "b.example.com"}, SecretName: "b-tls"}}
	tb := buildTable([]*networkingv1.Ingress{a, b})
	for _, tc := range []struct {
		name, pattern, secret string
	}{
		{"a.example.com", "a.example.com", ""},
		{"b.example.com", "b.example.com", "b/b-tls"},
		{"x.wild.example.com", "*.wild.example.com", "a/wild-tls"},
	} {
		pattern, hr, ok := tb.certHost(tc.name)
		if !ok {
			t.Errorf("certHost(%s): not served", tc.name)
			continue
		}
		secret := ""
		if hr.tls != nil {
			secret = hr.tls.namespace + "/" + hr.tls.name
		}
		if pattern != tc.pattern || secret != tc.secret {
			t.Errorf("certHost(%s) = %s with Secret %q; want %s with %q", tc.name, pattern, secret, tc.pattern, tc.secret)
		}
	}
	for _, name := range []string{"other.example.com", "y.x.wild.example.com", "wild.example.com"} {
		if _, _, ok := tb.certHost(name); ok {
			t.Errorf("certHost(%s) is served; want no certificate", name)
		}
	}
}

func TestCleanRequestPath(t *testing.T) {
	for in, want := range map[string]string{
		"":               "/",
		"/":              "/",
		"/a/../b":        "/b",
		"/a/./b/":        "/a/b/",
		"//a//b":         "/a/b",
		"/../../etc":     "/etc",
		"relative":       "/relative",
		"/api/v1/items/": "/api/v1/items/",
	} {
		if got := cleanRequestPath(in); got != want {
			t.Errorf("cleanRequestPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCertName(t *testing.T) {
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".com"
	for _, tc := range []struct{ in, want string }{
		{"shop.example.com", "shop.example.com"},
		{"*.preview.example.com", "_wildcard.preview.example.com"},
	} {
		if got := certName(tc.in); got != tc.want {
			t.Errorf("certName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, in := range []string{long, "../../etc/passwd", "a/b"} {
		got := certName(in)
		if strings.ContainsAny(got, "/\\") || strings.HasPrefix(got, ".") || len(got) > 200 {
			t.Errorf("certName(%q) = %q: not a safe file name", in, got)
		}
	}
	if certName("a/b") == certName("a_b") {
		t.Error("certName maps different patterns to one file")
	}
}
