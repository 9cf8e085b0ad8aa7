package engine

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/gitops/state"
)

// Routes of the GitOps engine's local API.
var (
	// RouteRepo answers RepoView.
	RouteRepo = api.Route{Method: http.MethodGet, Pattern: "/v1/repo"}
	// RouteSetRepo takes SetRepoRequest and answers state.RepoStatus.
	RouteSetRepo = api.Route{Method: http.MethodPut, Pattern: "/v1/repo"}
	// RouteSyncRepo asks for a sync now.
	RouteSyncRepo = api.Route{Method: http.MethodPost, Pattern: "/v1/repo/sync"}
	// RouteApps answers []state.Env.
	RouteApps = api.Route{Method: http.MethodGet, Pattern: "/v1/apps"}
	// RouteApp answers EnvView.
	RouteApp = api.Route{Method: http.MethodGet, Pattern: "/v1/apps/{app}/{env}"}
	// RouteManifest answers the YAML a revision applied.
	RouteManifest = api.Route{Method: http.MethodGet, Pattern: "/v1/apps/{app}/{env}/revisions/{n}/manifest"}
	// RouteRollback takes RollbackRequest and answers state.Env.
	RouteRollback = api.Route{Method: http.MethodPost, Pattern: "/v1/apps/{app}/{env}/rollback"}
	// RouteRelease answers state.Env.
	RouteRelease = api.Route{Method: http.MethodPost, Pattern: "/v1/apps/{app}/{env}/release"}
)

var _ api.Registrar = (*Engine)(nil)

// SetRepoRequest is the body of RouteSetRepo.
type SetRepoRequest struct {
	URL         string `json:"url"`
	Branch      string `json:"branch,omitempty"`
	Credentials string `json:"credentials,omitempty"`
}

// RollbackRequest is the body of RouteRollback; To 0 means the previous
// revision.
type RollbackRequest struct {
	To int `json:"to,omitempty"`
}

// Register adds the engine's API routes to mux.
func (e *Engine) Register(mux *http.ServeMux) {
	RouteRepo.Register(mux, handle(func(r *http.Request) (any, error) { return e.Repo() }))
	RouteSetRepo.Register(mux, handle(func(r *http.Request) (any, error) {
		var req SetRepoRequest
		if err := api.DecodeJSON(r, 1<<16, &req); err != nil {
			return nil, err
		}
		if req.URL == "" {
			return nil, api.Errorf(http.StatusBadRequest, "url is required: gluebox repo set-config URL")
		}
		return e.SetRepo(r.Context(), state.RepoConfig{URL: req.URL, Branch: req.Branch, Credentials: req.Credentials})
	}))
	RouteSyncRepo.Register(mux, handle(func(r *http.Request) (any, error) {
		e.Trigger()
		return map[string]string{"sync": "requested"}, nil
	}))
	RouteApps.Register(mux, handle(func(r *http.Request) (any, error) {
		envs, err := e.Envs()
		if envs == nil {
			envs = []state.Env{}
		}
		return envs, err
	}))
	RouteApp.Register(mux, handle(func(r *http.Request) (any, error) {
		return e.Env(r.PathValue("app"), r.PathValue("env"))
	}))
	RouteManifest.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n <= 0 {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "revision %q is not a positive number", r.PathValue("n")))
			return
		}
		m, err := e.Manifest(r.PathValue("app"), r.PathValue("env"), n)
		if err != nil {
			api.WriteError(w, toAPIError(err))
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(m)
	})
	RouteRollback.Register(mux, handle(func(r *http.Request) (any, error) {
		var req RollbackRequest
		if err := api.DecodeJSON(r, 1<<10, &req); err != nil {
			return nil, err
		}
		if req.To < 0 {
			return nil, api.Errorf(http.StatusBadRequest, "--to %d is not a revision number", req.To)
		}
		return e.Rollback(r.Context(), r.PathValue("app"), r.PathValue("env"), req.To)
	}))
	RouteRelease.Register(mux, handle(func(r *http.Request) (any, error) {
		return e.Release(r.Context(), r.PathValue("app"), r.PathValue("env"))
	}))
}

func handle(fn func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			api.WriteError(w, toAPIError(err))
			return
		}
		api.WriteJSON(w, http.StatusOK, v)
	}
}

func toAPIError(err error) error {
	var in *InputError
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return err
	case errors.As(err, &in):
		return api.Errorf(http.StatusBadRequest, "%s", in.Msg)
	case errors.Is(err, state.ErrNotFound):
		return api.Errorf(http.StatusNotFound, "%v", err)
	}
	return err
}
