package logs

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/gitops/render"
)

// Routes of the log store's local API. Both take Request's arguments.
var (
	// RouteQuery answers the newest matching lines, oldest first ([]LogLine).
	RouteQuery = api.Route{Method: http.MethodGet, Pattern: "/v1/logs"}
	// RouteTail follows matching lines: one JSON LogLine per line (application/x-ndjson) until the
	// client goes away. An error after the answer has started comes as a line {"error": "..."}.
	RouteTail = api.Route{Method: http.MethodGet, Pattern: "/v1/logs/tail"}
)

// LogLine is one line as the API returns it.
type LogLine struct {
	Time      time.Time `json:"time"`
	Namespace string    `json:"namespace,omitempty"`
	Pod       string    `json:"pod,omitempty"`
	Container string    `json:"container,omitempty"`
	Msg       string    `json:"msg"`
}

// Request is the arguments of RouteQuery and RouteTail.
type Request struct {
	// App and Env select an environment's namespace; give both or neither.
	App, Env string
	// Grep is a phrase the line must contain; Query is extra LogsQL ANDed on.
	Grep, Query string
	// Since is how far back to start (0: the store's default).
	Since time.Duration
	// Limit is the most lines RouteQuery answers, newest (0: the store's default).
	Limit int
}

// Values encodes r as the routes' query string.
func (r Request) Values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"app": r.App, "env": r.Env, "grep": r.Grep, "query": r.Query} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if r.Since > 0 {
		v.Set("since", r.Since.String())
	}
	if r.Limit > 0 {
		v.Set("limit", strconv.Itoa(r.Limit))
	}
	return v
}

// queryAndSince reads the arguments both routes take: the LogsQL they select and ?since=.
func queryAndSince(q url.Values) (string, time.Duration, error) {
	query, err := BuildQuery(q)
	if err != nil {
		return "", 0, err
	}
	since, err := api.QueryDuration(q, "since")
	return query, since, err
}

// API serves the log store's routes of the local API through a Client; it keeps no state.
type API struct {
	client *Client
}

var _ api.Registrar = (*API)(nil)

// NewAPI returns the API for the store c queries (Logs.Client).
func NewAPI(c *Client) *API { return &API{client: c} }

// Register adds the logs routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	RouteQuery.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		query, since, err := queryAndSince(q)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		limit := 0
		if v := q.Get("limit"); v != "" {
			if limit, err = strconv.Atoi(v); err != nil {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "limit %q is not a number", v))
				return
			}
		}
		var start time.Time
		if since > 0 {
			start = time.Now().Add(-since)
		}
		lines, err := a.client.Query(r.Context(), query, limit, start, time.Time{})
		if err != nil {
			api.WriteError(w, apiError(err))
			return
		}
		out := make([]LogLine, 0, len(lines))
		for _, l := range lines {
			out = append(out, toLogLine(l))
		}
		api.WriteJSON(w, http.StatusOK, out)
	})
	RouteTail.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		query, since, err := queryAndSince(r.URL.Query())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		flusher, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		err = a.client.Tail(r.Context(), query, since, func(l Line) error {
			if err := enc.Encode(toLogLine(l)); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		})
		if err != nil && r.Context().Err() == nil {
			_ = enc.Encode(map[string]string{"error": err.Error()})
		}
	})
}

func toLogLine(l Line) LogLine {
	return LogLine{Time: l.Time, Msg: l.Msg, Namespace: l.Fields["kubernetes.pod_namespace"],
		Pod: l.Fields["kubernetes.pod_name"], Container: l.Fields["kubernetes.container_name"]}
}

// BuildQuery builds the LogsQL for the API's logs arguments: app and env select the environment's
// namespace, grep is a phrase filter, query is extra LogsQL ANDed on. A bad argument is a 400.
func BuildQuery(q url.Values) (string, error) {
	var parts []string
	app, env := q.Get("app"), q.Get("env")
	if (app == "") != (env == "") {
		return "", api.Errorf(http.StatusBadRequest, "give both app and env (gluebox logs <app> <env>)")
	}
	if app != "" {
		if err := render.ValidateNames(app, env); err != nil {
			return "", api.Errorf(http.StatusBadRequest, "%v", err)
		}
		parts = append(parts, "kubernetes.pod_namespace:="+logsqlQuote(render.Namespace(app, env)))
	}
	if g := q.Get("grep"); g != "" {
		parts = append(parts, logsqlQuote(g))
	}
	if extra := q.Get("query"); extra != "" {
		parts = append(parts, "("+extra+")")
	}
	if len(parts) == 0 {
		return "*", nil
	}
	return strings.Join(parts, " AND "), nil
}

func logsqlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// apiError makes a request the store refuses as invalid a 400; anything else stays a 500.
func apiError(err error) error {
	if errors.Is(err, ErrInvalid) {
		return api.Errorf(http.StatusBadRequest, "%v", err)
	}
	return err
}
