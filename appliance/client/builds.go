package client

import (
	"context"
	"io"
	"net/url"
	"strconv"

	"github.com/gluebox/gluebox/appliance/gitops/follow"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/imagebuild"
)

// Builds lists build records, newest first, that match f (zero fields match everything; a
// zero Limit is the server's default of all).
func (c *Client) Builds(ctx context.Context, f imagebuild.Filter) ([]imagebuild.Record, error) {
	q := url.Values{}
	for k, v := range map[string]string{"app": f.App, "branch": f.Branch, "status": string(f.Status)} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out imagebuild.ListResponse
	return out.Builds, c.call(ctx, imagebuild.RouteList, nil, q, nil, &out)
}

// Build returns one build record.
func (c *Client) Build(ctx context.Context, id string) (imagebuild.Record, error) {
	return get[imagebuild.Record](ctx, c, imagebuild.RouteGet, id)
}

// BuildLogs copies a build's log to w; with follow, until the build ends or ctx does.
func (c *Client) BuildLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	return c.stream(ctx, imagebuild.RouteLogs, []string{id}, url.Values{"follow": {strconv.FormatBool(follow)}}, w)
}

// CancelBuild cancels a queued or running build and returns its record.
func (c *Client) CancelBuild(ctx context.Context, id string) (imagebuild.Record, error) {
	var out imagebuild.Record
	return out, c.call(ctx, imagebuild.RouteCancel, []string{id}, nil, nil, &out)
}

// Previews lists the open pull-request previews.
func (c *Client) Previews(ctx context.Context) ([]preview.Preview, error) {
	var out preview.ListResponse
	return out.Previews, c.call(ctx, preview.RouteList, nil, nil, nil, &out)
}

// BuildSources returns what the last poll saw of each app repository in platform.yaml.
func (c *Client) BuildSources(ctx context.Context) ([]follow.AppStatus, error) {
	var out follow.SourcesResponse
	return out.Apps, c.call(ctx, follow.RouteSources, nil, nil, nil, &out)
}
