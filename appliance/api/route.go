package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Route is one route of the local API: an HTTP method and a ServeMux pattern such as
// "/v1/secrets/{path...}". Each route is defined once, as a variable in the package that owns
// its handler; the handler registers with it (Register) and the client builds request paths from
// it (Path), so the two cannot drift apart.
type Route struct {
	Method  string
	Pattern string
}

// String returns the route as a ServeMux pattern with its method, e.g. "GET /v1/apps".
func (r Route) String() string { return r.Method + " " + r.Pattern }

// Register adds h to mux under the route.
func (r Route) Register(mux *http.ServeMux, h http.HandlerFunc) { mux.HandleFunc(r.String(), h) }

// Path returns the request path for the route with each wildcard of the pattern replaced by the
// next of args, in order. A single-segment wildcard {x} is escaped as one path segment (a slash in
// it is escaped too); a rest wildcard {x...} keeps its slashes and escapes each segment. {$} is
// dropped. The number of args must match the wildcards: a mismatch is a programming error and
// panics, which the client's tests catch.
func (r Route) Path(args ...string) string {
	var b strings.Builder
	p := r.Pattern
	n := 0
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			b.WriteString(p)
			break
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			panic(fmt.Sprintf("api: route %s: unclosed wildcard", r))
		}
		b.WriteString(p[:i])
		name := p[i+1 : i+j]
		p = p[i+j+1:]
		if name == "$" {
			continue
		}
		if n >= len(args) {
			panic(fmt.Sprintf("api: route %s: %d arguments given, more wildcards than that", r, len(args)))
		}
		arg := args[n]
		n++
		if strings.HasSuffix(name, "...") {
			segs := strings.Split(arg, "/")
			for k, s := range segs {
				segs[k] = url.PathEscape(s)
			}
			b.WriteString(strings.Join(segs, "/"))
		} else {
			b.WriteString(url.PathEscape(arg))
		}
	}
	if n != len(args) {
		panic(fmt.Sprintf("api: route %s: %d arguments given for %d wildcards", r, len(args), n))
	}
	return b.String()
}

// Registrar is implemented by every owner of local API routes: Register adds its routes to the
// server's mux. appliance/server calls it for each component; nothing else registers routes.
type Registrar interface {
	Register(mux *http.ServeMux)
}
