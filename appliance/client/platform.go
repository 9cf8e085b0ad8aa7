package client

import (
	"context"
	"io"
	"strconv"

	"github.com/gluebox/gluebox/appliance/console"
	"github.com/gluebox/gluebox/appliance/frontdoor"
	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/registry"
)

// RegistryStatus returns the built-in registry's status.
func (c *Client) RegistryStatus(ctx context.Context) (registry.Status, error) {
	return get[registry.Status](ctx, c, registry.RouteStatus)
}

// RegistryRepositories lists the registry's repositories with their tags and sizes.
func (c *Client) RegistryRepositories(ctx context.Context) ([]registry.RepoInfo, error) {
	return get[[]registry.RepoInfo](ctx, c, registry.RouteRepositories)
}

// RegistryGC deletes old manifests by the retention policy and reclaims unreferenced blobs.
func (c *Client) RegistryGC(ctx context.Context, opts registry.GCOptions) (registry.Report, error) {
	var out registry.Report
	return out, c.call(ctx, registry.RouteGC, nil, nil, opts, &out)
}

// RegistryMetrics copies the registry's metrics (Prometheus text format) to w.
func (c *Client) RegistryMetrics(ctx context.Context, w io.Writer) error {
	return c.stream(ctx, registry.RouteMetrics, nil, nil, w)
}

// Repo returns the deployment-configurations repository gluebox follows and its state.
func (c *Client) Repo(ctx context.Context) (engine.RepoView, error) {
	return get[engine.RepoView](ctx, c, engine.RouteRepo)
}

// SetRepo follows another deployment-configurations repository (checked before it is saved).
func (c *Client) SetRepo(ctx context.Context, req engine.SetRepoRequest) (state.RepoStatus, error) {
	var out state.RepoStatus
	return out, c.call(ctx, engine.RouteSetRepo, nil, nil, req, &out)
}

// SyncRepo asks for a check of the repository and a re-apply of every environment now.
func (c *Client) SyncRepo(ctx context.Context) error {
	return c.call(ctx, engine.RouteSyncRepo, nil, nil, nil, nil)
}

// Apps lists every environment.
func (c *Client) Apps(ctx context.Context) ([]state.Env, error) {
	return get[[]state.Env](ctx, c, engine.RouteApps)
}

// App returns one environment with its history.
func (c *Client) App(ctx context.Context, app, env string) (engine.EnvView, error) {
	return get[engine.EnvView](ctx, c, engine.RouteApp, app, env)
}

// Manifest copies the manifest revision n of app's env applied to w (YAML).
func (c *Client) Manifest(ctx context.Context, app, env string, n int, w io.Writer) error {
	return c.stream(ctx, engine.RouteManifest, []string{app, env, strconv.Itoa(n)}, nil, w)
}

// Rollback re-applies an earlier revision of app's env and holds it there.
func (c *Client) Rollback(ctx context.Context, app, env string, req engine.RollbackRequest) (state.Env, error) {
	var out state.Env
	return out, c.call(ctx, engine.RouteRollback, []string{app, env}, nil, req, &out)
}

// Release lifts a rollback hold of app's env.
func (c *Client) Release(ctx context.Context, app, env string) (state.Env, error) {
	var out state.Env
	return out, c.call(ctx, engine.RouteRelease, []string{app, env}, nil, nil, &out)
}

// Routes returns what the front door serves.
func (c *Client) Routes(ctx context.Context) (frontdoor.RoutesAnswer, error) {
	return get[frontdoor.RoutesAnswer](ctx, c, frontdoor.RouteRoutes)
}

// Console returns where the web console listens.
func (c *Client) Console(ctx context.Context) (console.Info, error) {
	return get[console.Info](ctx, c, console.RouteInfo)
}
