package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	networkingv1 "k8s.io/api/networking/v1"
)

type targetKey struct{}

// target is what serveHTTP decided for a request, handed to the ReverseProxy via the context.
// roundTrip changes hostport when it retries elsewhere.
type target struct {
	hostport string
	b        *backend
}

// serveHTTP is the routing handler: mounted gluebox handlers first, then Ingress routes.
func (f *FrontDoor) serveHTTP(w http.ResponseWriter, r *http.Request) {
	reqPath := cleanRequestPath(r.URL.Path)
	for _, m := range f.mounts {
		if reqPath == m.prefix || strings.HasPrefix(reqPath, m.prefix+"/") {
			m.h.ServeHTTP(w, r)
			return
		}
	}
	host := requestHost(r.Host)
	b, known := f.table.Load().lookup(host, reqPath)
	switch {
	case b == nil && host == "":
		http.Error(w, "gluebox: the request names no host (Host header) and no Ingress has a default backend", http.StatusNotFound)
		return
	case b == nil && known:
		http.Error(w, fmt.Sprintf("gluebox: no Ingress serves path %q on host %q", r.URL.Path, host), http.StatusNotFound)
		return
	case b == nil:
		http.Error(w, fmt.Sprintf("gluebox: no Ingress serves host %q", host), http.StatusNotFound)
		return
	}
	if b.redirect && r.TLS == nil {
		if port := f.httpsPort.Load(); port != 0 {
			http.Redirect(w, r, "https://"+urlHost(host, int(port))+r.URL.RequestURI(), http.StatusPermanentRedirect)
			return
		}
	}
	if b.resource != "" {
		http.Error(w, fmt.Sprintf("gluebox: Ingress %s/%s routes this request to resource %s; the gluebox front door serves only Service backends", b.namespace, b.ingress, b.resource), http.StatusBadGateway)
		return
	}
	hostport, err := f.resolve(r.Context(), b, "")
	if err != nil {
		f.log.Debug("cannot resolve backend", "ingress", b.namespace+"/"+b.ingress, "service", b.namespace+"/"+b.service, "port", b.portString(), "err", err)
		if none := (*noEndpointsError)(nil); errors.As(err, &none) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "gluebox: "+none.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Error(w, fmt.Sprintf("gluebox: cannot route to Service %s/%s port %s: %v", b.namespace, b.service, b.portString(), err), http.StatusBadGateway)
		return
	}
	ctx := context.WithValue(r.Context(), targetKey{}, &target{hostport: hostport, b: b})
	f.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// resolve returns the address for a request to b, other than avoid when possible.
func (f *FrontDoor) resolve(ctx context.Context, b *backend, avoid string) (string, error) {
	if f.endpoints == nil {
		return f.cfg.Resolve(ctx, b.namespace, b.service, b.port)
	}
	return f.endpoints.pick(b, avoid)
}

// roundTripFunc lets a method serve as the ReverseProxy's Transport.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (fn roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return fn(r) }

// roundTrip sends a request to the endpoint serveHTTP picked. When the dial fails (the pod has
// just died or is not listening yet, and its EndpointSlice does not say so yet) and the request
// is a GET, HEAD or OPTIONS without a body, it is sent once more to another endpoint. Only those
// are retried: the transport has closed a body by then, and should a failure that looks like a
// dial ever not be one, an idempotent request is the only kind that may safely run twice.
// Failures on a reused keep-alive connection are retried by http.Transport itself.
func (f *FrontDoor) roundTrip(out *http.Request) (*http.Response, error) {
	resp, err := f.tr.RoundTrip(out)
	if err == nil || !retryable(out, err) {
		return resp, err
	}
	t, _ := out.Context().Value(targetKey{}).(*target)
	if t == nil {
		return resp, err
	}
	next, rerr := f.resolve(out.Context(), t.b, t.hostport)
	if rerr != nil || next == t.hostport {
		return resp, err // no other endpoint: proxyError reports the first failure
	}
	b := t.b
	f.log.Debug("backend endpoint failed; retrying on another", "service", b.namespace+"/"+b.service, "port", b.portString(), "addr", t.hostport, "next", next, "err", err)
	t.hostport = next
	retry := out.Clone(out.Context())
	retry.URL.Host = next
	return f.tr.RoundTrip(retry)
}

// retryable says whether a failed request can be sent again to another endpoint: it failed
// while dialling, it is idempotent and has no body, and its client still waits.
func retryable(r *http.Request, err error) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		return false
	}
	if r.Body != nil && r.Body != http.NoBody || r.Context().Err() != nil {
		return false
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// rewrite points the outbound request at the resolved backend. The original Host is kept, as
// apps expect; X-Forwarded-* are set from this hop only (ReverseProxy has already removed what
// the client sent), since the front door is the edge and nothing before it is trusted.
func rewrite(pr *httputil.ProxyRequest) {
	t, _ := pr.In.Context().Value(targetKey{}).(*target)
	if t == nil {
		return // no backend: the transport fails and proxyError answers 502
	}
	pr.SetURL(&url.URL{Scheme: "http", Host: t.hostport})
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	pr.Out.Header.Del("Forwarded")
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		pr.Out.Header.Set("X-Real-IP", ip)
	} else {
		pr.Out.Header.Del("X-Real-IP")
	}
}

// proxyError answers 502 when the backend cannot be reached. The body names the Service but not
// its address, which is internal; the log has the details.
func (f *FrontDoor) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	t, _ := r.Context().Value(targetKey{}).(*target)
	if t == nil {
		http.Error(w, "gluebox: no backend for this request", http.StatusBadGateway)
		return
	}
	b := t.b
	f.log.Debug("backend error", "ingress", b.namespace+"/"+b.ingress, "service", b.namespace+"/"+b.service, "port", b.portString(), "addr", t.hostport, "err", err)
	if r.Context().Err() != nil {
		return // the client is gone (or we are shutting down): nobody to tell
	}
	reason := "failed"
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "refused the connection (is the app running and listening on that port?)"
	case errors.As(err, &ne) && ne.Timeout():
		reason = "did not answer in time"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		reason = "closed the connection"
	}
	http.Error(w, fmt.Sprintf("gluebox: the backend of Ingress %s/%s, Service %s/%s port %s, %s", b.namespace, b.ingress, b.namespace, b.service, b.portString(), reason), http.StatusBadGateway)
}

// requestHost is the Host header without port, lower-cased, without a trailing dot.
func requestHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// urlHost is host with port for a URL, leaving out the default HTTPS port.
func urlHost(host string, port int) string {
	if port == 443 {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

func portString(p networkingv1.ServiceBackendPort) string {
	return (&backend{port: p}).portString()
}
