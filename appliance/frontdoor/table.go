package frontdoor

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// IngressClass is the ingressClassName the front door serves. Ingresses without a class (nil or
// "") are served too, and so are GlueOps' classes "public" and "public-authenticated", so GlueOps values files
// deploy unchanged; any other class belongs to another controller and is ignored. When
// ingressClassName is nil, the legacy kubernetes.io/ingress.class annotation is judged the same way.
const IngressClass = "gluebox"

// glueOpsClasses are the ingress classes of a GlueOps cluster ("public" in the hello-world
// tutorial); gluebox has one front door and serves them all. "public-authenticated" is served
// without GlueOps' login in front of it: say so to users who rely on it.
var glueOpsClasses = []string{"public", "public-authenticated"}

func servedClass(c string) bool {
	return c == "" || c == IngressClass || slices.Contains(glueOpsClasses, c)
}

// ForceSSLRedirectAnnotation set to "true" on an Ingress makes plain-HTTP requests to its routes
// redirect (308) to HTTPS, when the HTTPS listener is enabled.
const ForceSSLRedirectAnnotation = "gluebox.dev/force-ssl-redirect"

// legacyClassAnnotation is the pre-ingressClassName way to pick a controller; it is honoured
// only when spec.ingressClassName is nil.
const legacyClassAnnotation = "kubernetes.io/ingress.class"

// Path types as Route reports them; ImplementationSpecific is served, and reported, as Prefix.
const (
	PathPrefix = "Prefix"
	PathExact  = "Exact"
)

// Route is one entry of the routing table as `gluebox status` and the API show it.
type Route struct {
	// Host is the rule's host: a DNS name, "*.suffix" for a wildcard that matches exactly one
	// more label, or "" for a rule without a host, which matches every host.
	Host string `json:"host"`
	// Path is the request path the route matches; empty for the default backend.
	Path string `json:"path,omitempty"`
	// PathType is PathPrefix or PathExact; empty for the default backend.
	PathType string `json:"path_type,omitempty"`
	// Default marks the default backend (an Ingress's spec.defaultBackend), used when no rule
	// matches the request.
	Default bool `json:"default,omitempty"`
	// Namespace and Ingress name the Ingress the route comes from.
	Namespace string `json:"namespace"`
	Ingress   string `json:"ingress"`
	// Service and Port name the backend Service; Port is a port number or a port name.
	Service string `json:"service,omitempty"`
	Port    string `json:"port,omitempty"`
	// Resource is "Kind/name" when the backend is a resource backend, which the front door cannot
	// serve (requests get 502).
	Resource string `json:"resource,omitempty"`
	// TLS says HTTPS for Host uses a certificate from an Ingress's spec.tls Secret rather than one
	// issued by the ingress CA.
	TLS bool `json:"tls,omitempty"`
	// ForceSSLRedirect says plain-HTTP requests are redirected to HTTPS.
	ForceSSLRedirect bool `json:"force_ssl_redirect,omitempty"`
}

// String is a one-line description used in logs.
func (r Route) String() string {
	var b strings.Builder
	if r.Default {
		b.WriteString("(default backend)")
	} else {
		host := r.Host
		if host == "" {
			host = "*"
		}
		fmt.Fprintf(&b, "%s%s (%s)", host, r.Path, r.PathType)
	}
	if r.Resource != "" {
		fmt.Fprintf(&b, " -> resource %s", r.Resource)
	} else {
		fmt.Fprintf(&b, " -> %s/%s:%s", r.Namespace, r.Service, r.Port)
	}
	fmt.Fprintf(&b, " [ingress %s/%s]", r.Namespace, r.Ingress)
	return b.String()
}

// backend is where a route sends requests.
type backend struct {
	namespace string
	ingress   string
	service   string
	port      networkingv1.ServiceBackendPort
	resource  string // "Kind/name" of a resource backend; service is empty then
	redirect  bool   // gluebox.dev/force-ssl-redirect
	// next is the default resolver's round-robin position. It starts over when the table is
	// rebuilt, which is harmless.
	next atomic.Uint64
}

func (b *backend) portString() string {
	if b.port.Name != "" {
		return b.port.Name
	}
	return strconv.Itoa(int(b.port.Number))
}

type pathRoute struct {
	path  string // Prefix paths carry no trailing slash, except "/"
	exact bool
	b     *backend
}

func (p pathRoute) matches(reqPath string) bool {
	if p.exact {
		return reqPath == p.path
	}
	if p.path == "/" {
		return true
	}
	// Prefix matching is by path element: /foo matches /foo and /foo/bar, not /foobar.
	return strings.HasPrefix(reqPath, p.path) && (len(reqPath) == len(p.path) || reqPath[len(p.path)] == '/')
}

func (p pathRoute) typeName() string {
	if p.exact {
		return PathExact
	}
	return PathPrefix
}

// hostRoutes are the routes of one host pattern, longest path first.
type hostRoutes struct {
	paths []pathRoute
	// tls is the Secret whose certificate serves this host pattern, from the oldest Ingress that
	// has a rule for the pattern and lists it under spec.tls; nil means the ingress CA issues one.
	tls *secretRef
}

func (h *hostRoutes) match(reqPath string) *backend {
	for _, p := range h.paths {
		if p.matches(reqPath) {
			return p.b
		}
	}
	return nil
}

type secretRef struct{ namespace, name string }

// table is an immutable routing table built from every served Ingress.
type table struct {
	exact map[string]*hostRoutes // by host
	wild  map[string]*hostRoutes // by the suffix after "*."
	any   *hostRoutes            // rules without a host
	def   *backend               // the default backend, if any Ingress has one

	routes   []Route  // sorted, for Routes
	problems []string // conflicts and ignored rules, in a stable order
}

// lookup finds the backend for a request. The most specific host pattern with a matching path
// wins (exact host, then wildcard, then rules without a host), so a wildcard or host-less rule
// still serves paths an exact host's Ingress does not claim. known says some rule names the
// host, which only changes the wording of a 404.
func (t *table) lookup(host, reqPath string) (b *backend, known bool) {
	if hr := t.exact[host]; hr != nil {
		known = true
		if b := hr.match(reqPath); b != nil {
			return b, true
		}
	}
	if hr := t.wildcard(host); hr != nil {
		known = true
		if b := hr.match(reqPath); b != nil {
			return b, true
		}
	}
	if t.any != nil {
		known = true
		if b := t.any.match(reqPath); b != nil {
			return b, true
		}
	}
	return t.def, known
}

func (t *table) wildcard(host string) *hostRoutes {
	if i := strings.IndexByte(host, '.'); i > 0 {
		return t.wild[host[i+1:]]
	}
	return nil
}

// certHost says which host pattern a TLS server name is served under: the exact host when a
// rule names it, else the matching wildcard. Rules without a host do not count, so the CA signs
// only names some Ingress asks for.
func (t *table) certHost(name string) (pattern string, hr *hostRoutes, ok bool) {
	if hr := t.exact[name]; hr != nil {
		return name, hr, true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if hr := t.wild[name[i+1:]]; hr != nil {
			return "*." + name[i+1:], hr, true
		}
	}
	return "", nil, false
}

// served says whether an Ingress belongs to the front door.
func served(ing *networkingv1.Ingress) bool {
	if c := ing.Spec.IngressClassName; c != nil {
		return servedClass(*c)
	}
	c, ok := ing.Annotations[legacyClassAnnotation]
	return !ok || servedClass(c)
}

// olderFirst orders Ingresses for conflict resolution: the oldest claim wins, ties broken by
// namespace/name so every rebuild agrees.
func olderFirst(a, b *networkingv1.Ingress) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// buildTable turns Ingresses into a routing table. It never fails: a rule that cannot be served
// is left out and described in problems, so one bad Ingress cannot take the others down.
func buildTable(ings []*networkingv1.Ingress) *table {
	ings = slices.Clone(ings)
	slices.SortFunc(ings, olderFirst)
	t := &table{exact: map[string]*hostRoutes{}, wild: map[string]*hostRoutes{}}
	type key struct {
		host, path string
		exact      bool
	}
	owners := map[key]string{}
	var defOwner string
	for _, ing := range ings {
		if !served(ing) {
			continue
		}
		id := ing.Namespace + "/" + ing.Name
		redirect := ing.Annotations[ForceSSLRedirectAnnotation] == "true"
		if db := ing.Spec.DefaultBackend; db != nil {
			switch b, err := newBackend(ing, *db, redirect); {
			case err != nil:
				t.problems = append(t.problems, fmt.Sprintf("Ingress %s: default backend ignored: %v", id, err))
			case t.def == nil:
				t.def, defOwner = b, id
			default:
				t.problems = append(t.problems, fmt.Sprintf("conflict: Ingress %s and %s both set spec.defaultBackend; %s wins (older, or first by namespace/name)", defOwner, id, defOwner))
			}
		}
		for i, rule := range ing.Spec.Rules {
			host := strings.TrimSuffix(strings.ToLower(rule.Host), ".")
			if err := validHost(host); err != nil {
				t.problems = append(t.problems, fmt.Sprintf("Ingress %s: rule %d ignored: host %q %v", id, i, rule.Host, err))
				continue
			}
			hr := t.hostRoutes(host)
			if hr.tls == nil && host != "" {
				if s := tlsSecret(ing, host); s != "" {
					hr.tls = &secretRef{namespace: ing.Namespace, name: s}
				}
			}
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				reqPath, exact, err := normPath(p)
				if err == nil {
					var b *backend
					if b, err = newBackend(ing, p.Backend, redirect); err == nil {
						k := key{host, reqPath, exact}
						if prev, ok := owners[k]; ok {
							t.problems = append(t.problems, fmt.Sprintf("conflict: %s%s (%s) is claimed by Ingress %s and %s; %s wins (older, or first by namespace/name)",
								hostLabel(host), reqPath, pathRoute{exact: exact}.typeName(), prev, id, prev))
							continue
						}
						owners[k] = id
						hr.paths = append(hr.paths, pathRoute{path: reqPath, exact: exact, b: b})
						continue
					}
				}
				t.problems = append(t.problems, fmt.Sprintf("Ingress %s: %s path %q ignored: %v", id, hostLabel(host), p.Path, err))
			}
		}
	}
	t.finish()
	return t
}

func (t *table) hostRoutes(host string) *hostRoutes {
	var m map[string]*hostRoutes
	switch {
	case host == "":
		if t.any == nil {
			t.any = &hostRoutes{}
		}
		return t.any
	case strings.HasPrefix(host, "*."):
		m, host = t.wild, host[2:]
	default:
		m = t.exact
	}
	hr := m[host]
	if hr == nil {
		hr = &hostRoutes{}
		m[host] = hr
	}
	return hr
}

// finish orders paths longest first (Exact before Prefix on a tie, as Kubernetes specifies) and
// lists the routes.
func (t *table) finish() {
	add := func(host string, hr *hostRoutes) {
		slices.SortFunc(hr.paths, func(a, b pathRoute) int {
			if c := cmp.Compare(len(b.path), len(a.path)); c != 0 {
				return c
			}
			if a.exact != b.exact {
				if a.exact {
					return -1
				}
				return 1
			}
			return strings.Compare(a.path, b.path)
		})
		for _, p := range hr.paths {
			r := p.b.route()
			r.Host, r.Path, r.PathType, r.TLS = host, p.path, p.typeName(), hr.tls != nil
			t.routes = append(t.routes, r)
		}
	}
	for host, hr := range t.exact {
		add(host, hr)
	}
	for suffix, hr := range t.wild {
		add("*."+suffix, hr)
	}
	if t.any != nil {
		add("", t.any)
	}
	slices.SortFunc(t.routes, func(a, b Route) int {
		return cmp.Or(strings.Compare(a.Host, b.Host), strings.Compare(a.Path, b.Path), strings.Compare(a.PathType, b.PathType))
	})
	if t.def != nil {
		r := t.def.route()
		r.Default = true
		t.routes = append(t.routes, r)
	}
}

func (b *backend) route() Route {
	r := Route{Namespace: b.namespace, Ingress: b.ingress, Resource: b.resource, ForceSSLRedirect: b.redirect}
	if b.resource == "" {
		r.Service, r.Port = b.service, b.portString()
	}
	return r
}

func newBackend(ing *networkingv1.Ingress, ib networkingv1.IngressBackend, redirect bool) (*backend, error) {
	b := &backend{namespace: ing.Namespace, ingress: ing.Name, redirect: redirect}
	switch {
	case ib.Resource != nil:
		b.resource = ib.Resource.Kind + "/" + ib.Resource.Name
	case ib.Service == nil || ib.Service.Name == "":
		return nil, fmt.Errorf("backend names no Service")
	case ib.Service.Port.Name == "" && (ib.Service.Port.Number <= 0 || ib.Service.Port.Number > 65535):
		return nil, fmt.Errorf("backend Service %s has no valid port (want a port number or name)", ib.Service.Name)
	default:
		b.service, b.port = ib.Service.Name, ib.Service.Port
	}
	return b, nil
}

// normPath returns the path a route matches and whether it must match exactly.
// ImplementationSpecific is served as Prefix; a trailing slash of a Prefix path is ignored, as
// Kubernetes specifies (/foo/ matches /foo).
func normPath(p networkingv1.HTTPIngressPath) (string, bool, error) {
	pt := networkingv1.PathTypeImplementationSpecific
	if p.PathType != nil {
		pt = *p.PathType
	}
	reqPath := p.Path
	if reqPath == "" {
		reqPath = "/"
	}
	if !strings.HasPrefix(reqPath, "/") {
		return "", false, fmt.Errorf("path must start with /")
	}
	switch pt {
	case networkingv1.PathTypeExact:
		return reqPath, true, nil
	case networkingv1.PathTypePrefix, networkingv1.PathTypeImplementationSpecific:
		if trimmed := strings.TrimRight(reqPath, "/"); trimmed != "" {
			reqPath = trimmed
		} else {
			reqPath = "/"
		}
		return reqPath, false, nil
	}
	return "", false, fmt.Errorf("unknown pathType %q (want Prefix, Exact or ImplementationSpecific)", pt)
}

// validHost accepts "", a DNS name, or "*." followed by a DNS name; its error reads after the host.
func validHost(host string) error {
	if host == "" {
		return nil
	}
	var errs []string
	if strings.HasPrefix(host, "*.") {
		errs = validation.IsWildcardDNS1123Subdomain(host)
	} else {
		errs = validation.IsDNS1123Subdomain(host)
	}
	if len(errs) > 0 {
		return fmt.Errorf("is not a valid DNS name: %s", strings.Join(errs, "; "))
	}
	return nil
}

// tlsSecret returns the Secret of ing's spec.tls that covers the rule host pattern, if any. An
// entry without hosts covers every host of the Ingress's rules; a wildcard entry covers the
// names it matches. Entries only apply to hosts of the same Ingress's rules, so an Ingress cannot
// put its certificate in front of another app's host.
func tlsSecret(ing *networkingv1.Ingress, host string) string {
	for _, e := range ing.Spec.TLS {
		if e.SecretName == "" {
			continue
		}
		if len(e.Hosts) == 0 {
			return e.SecretName
		}
		for _, h := range e.Hosts {
			h = strings.TrimSuffix(strings.ToLower(h), ".")
			if h == host || (!strings.HasPrefix(host, "*.") && wildcardMatches(h, host)) {
				return e.SecretName
			}
		}
	}
	return ""
}

// wildcardMatches says whether pattern "*.suffix" matches name, which must then be one label
// followed by ".suffix".
func wildcardMatches(pattern, name string) bool {
	suffix, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && name[i+1:] == suffix
}

func hostLabel(host string) string {
	if host == "" {
		return "any host"
	}
	return "host " + host
}

// cleanRequestPath is the path routes are matched against: cleaned like http.ServeMux does, so
// /a/../b is routed as /b, keeping a trailing slash. The request is forwarded unchanged.
func cleanRequestPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}
