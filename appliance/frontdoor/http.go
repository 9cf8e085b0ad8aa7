package frontdoor

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// RouteRoutes answers RoutesAnswer: what the front door serves.
var RouteRoutes = api.Route{Method: http.MethodGet, Pattern: "/v1/routes"}

// RoutesAnswer is the answer of RouteRoutes: the routing table and the CA that issues the HTTPS
// certificates.
type RoutesAnswer struct {
	Routes []Route `json:"routes"`
	CAFile string  `json:"ca_file"`
}

var _ api.Registrar = (*FrontDoor)(nil)

// Register adds RouteRoutes to mux.
func (f *FrontDoor) Register(mux *http.ServeMux) {
	RouteRoutes.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, RoutesAnswer{Routes: f.Routes(), CAFile: f.CAFile()})
	})
}
