package metrics

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gluebox/gluebox/appliance/api"
)

// Routes of the metrics store's local API.
var (
	// RouteQuery evaluates ?query= at ?time= (RFC 3339 or Unix seconds; default now) and answers
	// Result.
	RouteQuery = api.Route{Method: http.MethodGet, Pattern: "/v1/metrics/query"}
	// RouteQueryRange evaluates ?query= from ?start= to ?end= every ?step= and answers Result.
	RouteQueryRange = api.Route{Method: http.MethodGet, Pattern: "/v1/metrics/query_range"}
)

// QueryRequest is the arguments of RouteQuery.
type QueryRequest struct {
	Query string
	// Time is the evaluation time, RFC 3339 or Unix seconds; "" means now.
	Time string
}

// Values encodes r as RouteQuery's query string.
func (r QueryRequest) Values() url.Values {
	v := url.Values{"query": {r.Query}}
	if r.Time != "" {
		v.Set("time", r.Time)
	}
	return v
}

// RangeRequest is the arguments of RouteQueryRange; the times travel as Unix seconds.
type RangeRequest struct {
	Query      string
	Start, End time.Time
	Step       time.Duration
}

// Values encodes r as RouteQueryRange's query string.
func (r RangeRequest) Values() url.Values {
	v := url.Values{"query": {r.Query}}
	if !r.Start.IsZero() {
		v.Set("start", strconv.FormatInt(r.Start.Unix(), 10))
	}
	if !r.End.IsZero() {
		v.Set("end", strconv.FormatInt(r.End.Unix(), 10))
	}
	if r.Step != 0 {
		v.Set("step", r.Step.String())
	}
	return v
}

// API serves the metrics store's routes of the local API through a Client; it keeps no state.
type API struct {
	client *Client
}

var _ api.Registrar = (*API)(nil)

// NewAPI returns the API for the store c queries (Metrics.Client).
func NewAPI(c *Client) *API { return &API{client: c} }

// Register adds the metrics routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	RouteQuery.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		at, err := api.QueryTime(q, "time")
		if err != nil {
			api.WriteError(w, err)
			return
		}
		res, err := a.client.Query(r.Context(), q.Get("query"), at)
		if err != nil {
			api.WriteError(w, apiError(err))
			return
		}
		api.WriteJSON(w, http.StatusOK, res)
	})
	RouteQueryRange.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		start, err1 := api.QueryTime(q, "start")
		end, err2 := api.QueryTime(q, "end")
		step, err3 := api.QueryDuration(q, "step")
		if err := errors.Join(err1, err2, err3); err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		res, err := a.client.QueryRange(r.Context(), q.Get("query"), start, end, step)
		if err != nil {
			api.WriteError(w, apiError(err))
			return
		}
		api.WriteJSON(w, http.StatusOK, res)
	})
}

// apiError makes a query the store refuses as invalid a 400; anything else stays a 500.
func apiError(err error) error {
	if errors.Is(err, ErrInvalid) {
		return api.Errorf(http.StatusBadRequest, "%v", err)
	}
	return err
}
