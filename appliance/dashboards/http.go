package dashboards

import (
	"errors"
	"github.com/gluebox/gluebox/appliance/api"
	"net/http"
	"net/url"
)

// RouteDashboard answers the Dashboard of one environment over ?since= at ?step= (Options).
var RouteDashboard = api.Route{Method: http.MethodGet, Pattern: "/v1/dashboards/{app}/{env}"}

// Values encodes the Options as RouteDashboard's query string.
func (o Options) Values() url.Values {
	v := url.Values{}
	if o.Since > 0 {
		v.Set("since", o.Since.String())
	}
	if o.Step > 0 {
		v.Set("step", o.Step.String())
	}
	return v
}

// API serves RouteDashboard from a metrics Querier and the deploy History.
type API struct {
	q Querier
	h History
}

var _ api.Registrar = (*API)(nil)

// NewAPI returns the API for the metrics store q and the GitOps history h; with h nil (no GitOps
// engine) the route answers 503.
func NewAPI(q Querier, h History) *API { return &API{q: q, h: h} }

// Register adds RouteDashboard to mux.
func (a *API) Register(mux *http.ServeMux) {
	RouteDashboard.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		since, err1 := api.QueryDuration(q, "since")
		step, err2 := api.QueryDuration(q, "step")
		if err := errors.Join(err1, err2); err != nil {
			api.WriteError(w, err)
			return
		}
		if a.h == nil {
			api.WriteError(w, api.Errorf(http.StatusServiceUnavailable, "the GitOps engine is not running"))
			return
		}
		d, err := Build(r.Context(), a.q, a.h, r.PathValue("app"), r.PathValue("env"), Options{Since: since, Step: step})
		if err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, d)
	})
}
