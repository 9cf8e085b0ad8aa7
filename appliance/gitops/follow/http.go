package follow

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// routeSources answers what the last poll saw of each app repository. Every route string of
// this package is here.
const routeSources = "GET /v1/build-sources"

// SourcesResponse is the body of GET /v1/build-sources.
type SourcesResponse struct {
	Apps []AppStatus `json:"apps"`
}

// Routes adds the follower's API to mux.
func (f *Follower) Routes(mux *http.ServeMux) {
	mux.HandleFunc(routeSources, func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, SourcesResponse{Apps: f.Apps()})
	})
}
