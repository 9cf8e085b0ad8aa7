package metrics

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// NewUIHandler returns a handler that serves VictoriaMetrics' query UI (vmui) and the read-only
// API it calls, proxied from the store at base (e.g. http://127.0.0.1:8428), for mounting at
// prefix (e.g. "/metrics/ui") behind gluebox's login. prefix is stripped before proxying;
// prefix itself redirects to prefix/vmui/. vmui finds its API at prefix/prometheus/api/v1/...,
// which VictoriaMetrics serves too. Writes, imports, deletes and other admin paths answer 404:
// the UI is for reading.
func NewUIHandler(base, prefix string) http.Handler {
	target, err := url.Parse(base)
	if err != nil || target.Host == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "metrics store address is not configured", http.StatusServiceUnavailable)
		})
	}
	prefix = "/" + strings.Trim(prefix, "/")
	if prefix == "/" {
		prefix = ""
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			// Nothing of gluebox's session reaches VictoriaMetrics.
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Authorization")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "metrics store unavailable: "+err.Error(), http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if rest == "" || rest == "/" {
			http.Redirect(w, r, prefix+"/vmui/", http.StatusFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if !UIPathAllowed(rest) {
			http.NotFound(w, r)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = rest
		r2.URL.RawPath = ""
		proxy.ServeHTTP(w, r2)
	})
}

// UIPathAllowed reports whether the UI proxy forwards path (already stripped of its prefix): the
// UI itself, the query API and the scrape-target pages, but nothing that writes or administers.
func UIPathAllowed(path string) bool {
	if strings.Contains(path, "..") || strings.Contains(path, "//") {
		return false
	}
	if path == "/vmui" || strings.HasPrefix(path, "/vmui/") || strings.HasPrefix(path, "/graph/") {
		return true
	}
	p := strings.TrimPrefix(path, "/prometheus")
	if strings.HasPrefix(p, "/api/v1/") {
		for _, deny := range []string{"/api/v1/admin/", "/api/v1/import", "/api/v1/write", "/api/v1/push"} {
			if strings.HasPrefix(p, deny) {
				return false
			}
		}
		return true
	}
	switch p {
	case "/targets", "/service-discovery", "/expand-with-exprs", "/prettify-query",
		"/metric-relabel-debug", "/target-relabel-debug":
		return true
	}
	return false
}
