package preview

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// routeList answers the open previews. Every route string of this package is here.
const routeList = "GET /v1/previews"

// ListResponse is the body of GET /v1/previews.
type ListResponse struct {
	Previews []Preview `json:"previews"`
}

// Routes adds the previews API to mux.
func (s *Store) Routes(mux *http.ServeMux) {
	mux.HandleFunc(routeList, func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, ListResponse{Previews: s.List(false)})
	})
}
