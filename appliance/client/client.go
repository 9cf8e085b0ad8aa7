// Package client is the typed client of gluebox's local API: one method per route, with the
// request and answer types of the packages that own the routes (appliance/secrets,
// appliance/registry, appliance/gitops/engine, …), so the CLI and the console never build a
// path by hand. It talks over the data dir's unix socket through appliance/api's Client.
//
// Errors the server answers come back unchanged as *api.Error (status and the server's
// message, which says what is wrong, where and how to fix it); a server that is not running is
// a plain error saying so.
//
// It has no lifecycle; a Client may be used by many goroutines. Anything may import it except
// the packages whose types it uses.
package client

import (
	"context"
	"io"
	"net/url"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/status"
)

// Client calls the local API of one gluebox server.
type Client struct {
	c *api.Client
}

// New returns a Client for the API socket at path (paths.Layout.Socket()).
func New(socket string) *Client { return &Client{c: api.NewClient(socket)} }

// call sends in (if not nil) to route with args filling its wildcards and q as its query
// string, and decodes the answer into out (if not nil).
func (c *Client) call(ctx context.Context, route api.Route, args []string, q url.Values, in, out any) error {
	return c.c.Do(ctx, route.Method, withQuery(route.Path(args...), q), in, out)
}

// stream copies the raw answer of route to w.
func (c *Client) stream(ctx context.Context, route api.Route, args []string, q url.Values, w io.Writer) error {
	return c.c.Stream(ctx, route.Method, withQuery(route.Path(args...), q), nil, w)
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// get decodes the answer of a route without body or query into a new T.
func get[T any](ctx context.Context, c *Client, route api.Route, args ...string) (T, error) {
	var out T
	err := c.call(ctx, route, args, nil, nil, &out)
	return out, err
}

// Status returns the server's status (`gluebox status`).
func (c *Client) Status(ctx context.Context) (status.Status, error) {
	return get[status.Status](ctx, c, status.Route)
}
