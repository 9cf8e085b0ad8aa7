package console

import (
	"net/http"

	"github.com/gluebox/gluebox/appliance/api"
)

// RouteInfo answers Info: where the console listens.
var RouteInfo = api.Route{Method: http.MethodGet, Pattern: "/v1/console"}

// Info is the answer of RouteInfo.
type Info struct {
	URL    string   `json:"url"`
	CAFile string   `json:"caFile"`
	Tools  []string `json:"tools"`
}

var _ api.Registrar = (*Console)(nil)

// Register adds RouteInfo to mux.
func (c *Console) Register(mux *http.ServeMux) {
	RouteInfo.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		info := Info{URL: "https://" + c.Addr() + "/", CAFile: c.CAFile(), Tools: []string{}}
		for _, t := range c.Tools() {
			info.Tools = append(info.Tools, t.Prefix)
		}
		api.WriteJSON(w, http.StatusOK, info)
	})
}
