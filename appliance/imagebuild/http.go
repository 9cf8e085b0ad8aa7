package imagebuild

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gluebox/gluebox/appliance/api"
)

// The builds API. Every route string of this package is here.
var (
	// RouteList answers ?app=&branch=&status=&limit= with the matching records, newest first.
	RouteList = api.Route{Method: http.MethodGet, Pattern: "/v1/builds"}
	// RouteGet answers one record.
	RouteGet = api.Route{Method: http.MethodGet, Pattern: "/v1/builds/{id}"}
	// RouteLogs streams a build's log; with ?follow=true until the build ends.
	RouteLogs = api.Route{Method: http.MethodGet, Pattern: "/v1/builds/{id}/logs"}
	// RouteCancel cancels a queued or running build and answers its record.
	RouteCancel = api.Route{Method: http.MethodPost, Pattern: "/v1/builds/{id}/cancel"}
)

// ListResponse is the body of GET /v1/builds.
type ListResponse struct {
	Builds []Record `json:"builds"`
}

var _ api.Registrar = (*Queue)(nil)

// Register adds the builds API to mux.
func (q *Queue) Register(mux *http.ServeMux) {
	RouteList.Register(mux, q.handleList)
	RouteGet.Register(mux, q.handleGet)
	RouteLogs.Register(mux, q.handleLogs)
	RouteCancel.Register(mux, q.handleCancel)
}

func (q *Queue) handleList(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	f := Filter{App: v.Get("app"), Branch: v.Get("branch"), Status: Status(v.Get("status"))}
	switch f.Status {
	case "", StatusQueued, StatusRunning, StatusSucceeded, StatusFailed, StatusCancelled:
	default:
		api.WriteError(w, api.Errorf(http.StatusBadRequest, "status %q is not one of queued, running, succeeded, failed, cancelled", f.Status))
		return
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "limit %q is not a non-negative number", s))
			return
		}
		f.Limit = n
	}
	rs := q.List(f)
	if rs == nil {
		rs = []Record{}
	}
	api.WriteJSON(w, http.StatusOK, ListResponse{Builds: rs})
}

func (q *Queue) handleGet(w http.ResponseWriter, r *http.Request) {
	rec, err := q.Get(r.PathValue("id"))
	if err != nil {
		api.WriteError(w, apiError(err))
		return
	}
	api.WriteJSON(w, http.StatusOK, rec)
}

func (q *Queue) handleLogs(w http.ResponseWriter, r *http.Request) {
	follow := r.URL.Query().Get("follow") == "true"
	rc, err := q.Logs(r.Context(), r.PathValue("id"), follow)
	if err != nil {
		api.WriteError(w, apiError(err))
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func (q *Queue) handleCancel(w http.ResponseWriter, r *http.Request) {
	if err := q.Cancel(r.PathValue("id")); err != nil {
		api.WriteError(w, apiError(err))
		return
	}
	rec, _ := q.Get(r.PathValue("id"))
	api.WriteJSON(w, http.StatusOK, rec)
}

// apiError gives the queue's errors their HTTP status and what to do.
func apiError(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return api.Errorf(http.StatusNotFound, "%v: see `gluebox build list`", err)
	case errors.Is(err, ErrFinished):
		return api.Errorf(http.StatusConflict, "%v", err)
	}
	return err
}
