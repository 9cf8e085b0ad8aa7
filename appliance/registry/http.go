package registry

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// Routes of the registry's local API.
var (
	// RouteStatus answers Status.
	RouteStatus = api.Route{Method: http.MethodGet, Pattern: "/v1/registry/status"}
	// RouteRepositories answers []RepoInfo (tags and sizes).
	RouteRepositories = api.Route{Method: http.MethodGet, Pattern: "/v1/registry/repositories"}
	// RouteGC takes GCOptions (an empty body means the defaults) and answers Report.
	RouteGC = api.Route{Method: http.MethodPost, Pattern: "/v1/registry/gc"}
	// RouteMetrics answers the registry's own metrics in the Prometheus text format.
	RouteMetrics = api.Route{Method: http.MethodGet, Pattern: "/v1/metrics/registry"}
)

var _ api.Registrar = (*Registry)(nil)

// Register adds the registry's local API routes to mux.
func (r *Registry) Register(mux *http.ServeMux) {
	RouteStatus.Register(mux, func(w http.ResponseWriter, req *http.Request) {
		st, err := r.Status(req.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, st)
	})
	RouteRepositories.Register(mux, func(w http.ResponseWriter, req *http.Request) {
		list, err := r.List(req.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, list)
	})
	RouteGC.Register(mux, func(w http.ResponseWriter, req *http.Request) {
		var opts GCOptions
		if req.ContentLength != 0 {
			if err := api.DecodeJSON(req, 1<<20, &opts); err != nil {
				api.WriteError(w, err)
				return
			}
		}
		for _, d := range opts.Keep {
			if err := d.Validate(); err != nil {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "cannot keep %q: not a digest: %v", d, err))
				return
			}
		}
		rep, err := r.GC(req.Context(), opts)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, rep)
	})
	RouteMetrics.Register(mux, r.MetricsHandler().ServeHTTP)
}
