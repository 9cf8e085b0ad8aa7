package follow

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// RouteSources answers what the last poll saw of each app repository. Every route string of
// this package is here.
var RouteSources = api.Route{Method: http.MethodGet, Pattern: "/v1/build-sources"}

// SourcesResponse is the body of GET /v1/build-sources.
type SourcesResponse struct {
	Apps []AppStatus `json:"apps"`
}

var _ api.Registrar = (*Follower)(nil)

// Register adds the follower's API to mux.
func (f *Follower) Register(mux *http.ServeMux) {
	RouteSources.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, SourcesResponse{Apps: f.Apps()})
	})
}
