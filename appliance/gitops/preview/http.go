package preview

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// RouteList answers the open previews. Every route string of this package is here.
var RouteList = api.Route{Method: http.MethodGet, Pattern: "/v1/previews"}

// ListResponse is the body of GET /v1/previews.
type ListResponse struct {
	Previews []Preview `json:"previews"`
}

var _ api.Registrar = (*Store)(nil)

// Register adds the previews API to mux.
func (s *Store) Register(mux *http.ServeMux) {
	RouteList.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, ListResponse{Previews: s.List(false)})
	})
}
