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

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

type targetKey struct{}

// target is what serveHTTP decided for a request, handed to the ReverseProxy via the context.
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
	hostport, err := f.resolve(r.Context(), b.namespace, b.service, b.port)
	if err != nil {
		f.log.Debug("cannot resolve backend", "ingress", b.namespace+"/"+b.ingress, "service", b.namespace+"/"+b.service, "port", b.portString(), "err", err)
		http.Error(w, fmt.Sprintf("gluebox: cannot route to Service %s/%s port %s: %v", b.namespace, b.service, b.portString(), err), http.StatusBadGateway)
		return
	}
	ctx := context.WithValue(r.Context(), targetKey{}, &target{hostport: hostport, b: b})
	f.proxy.ServeHTTP(w, r.WithContext(ctx))
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

// resolveClusterIP is the default ResolveFunc: the Service's ClusterIP and the Service port
// chosen by number or name. kube-proxy on the node makes ClusterIPs reachable from the host.
// ExternalName Services are refused: the front door runs on the host, and an ExternalName such as
// localhost would expose host-only services (console, registry) to the network.
func (f *FrontDoor) resolveClusterIP(_ context.Context, namespace, name string, port networkingv1.ServiceBackendPort) (string, error) {
	svc, err := f.services.Services(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("service %s/%s does not exist", namespace, name)
	}
	if err != nil {
		return "", fmt.Errorf("cannot read service %s/%s: %w", namespace, name, err)
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return "", fmt.Errorf("service %s/%s is of type ExternalName, which the front door does not serve", namespace, name)
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", fmt.Errorf("service %s/%s has no cluster IP (headless Services are not supported)", namespace, name)
	}
	for _, p := range svc.Spec.Ports {
		if (port.Name != "" && p.Name == port.Name) || (port.Name == "" && p.Port == port.Number) {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				return "", fmt.Errorf("service %s/%s port %s is %s, not TCP", namespace, name, portString(port), p.Protocol)
			}
			return net.JoinHostPort(ip, strconv.Itoa(int(p.Port))), nil
		}
	}
	return "", fmt.Errorf("service %s/%s has no port %s", namespace, name, portString(port))
}

func portString(p networkingv1.ServiceBackendPort) string {
	return (&backend{port: p}).portString()
}
