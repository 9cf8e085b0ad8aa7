// Package api is the local JSON API that the CLI and the console use to talk to a running
// `gluebox server`. It owns the wire conventions (JSON bodies, errors as {"error": "..."}), the
// unix-socket transport, and the Route type: every component that serves routes defines them as
// Route variables in its own package and registers its handlers through Registrar; the typed
// client (appliance/client) builds its request paths from the same variables.
//
// Anything may import it. It has no lifecycle of its own: Serve runs until its context ends.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Error is an API failure as the client sees it: the HTTP status and the server's message.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given status, for handlers that want to choose the status.
func Errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// WriteJSON writes v as a JSON body with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes err as {"error": "..."}. An *Error keeps its status; anything else is a 500.
func WriteError(w http.ResponseWriter, err error) {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		WriteJSON(w, apiErr.Status, apiErr)
		return
	}
	WriteJSON(w, http.StatusInternalServerError, &Error{Message: err.Error()})
}

// DecodeJSON reads a JSON request body of at most limit bytes into v and rejects unknown fields,
// so a typo in a client's request is an error rather than a silently ignored field.
func DecodeJSON(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, "cannot decode request body: %v", err)
	}
	return nil
}

// Client calls the API of one gluebox instance over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a Client for the socket at path (normally paths.Layout.Socket()).
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Do sends in (if not nil) as JSON with method to path (for example "/v1/status") and decodes the
// JSON answer into out (if not nil). A non-2xx answer becomes an *Error carrying the server's
// message.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("cannot encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("cannot decode answer from %s %s: %w", method, path, err)
	}
	return nil
}

// Stream sends body to path and copies the raw answer to w until the server closes it or ctx ends;
// it is for logs and other long answers.
func (c *Client) Stream(ctx context.Context, method, path string, body io.Reader, w io.Writer) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() == nil {
		return fmt.Errorf("cannot read answer from %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://gluebox"+path, body)
	if err != nil {
		return nil, fmt.Errorf("cannot build request %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "connection refused") {
			return nil, fmt.Errorf("gluebox server is not running (no API socket at %s): start it with `gluebox server` or pass the --data-dir it uses", c.socket)
		}
		return nil, fmt.Errorf("cannot call %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		apiErr := &Error{Status: resp.StatusCode}
		if json.Unmarshal(b, apiErr) != nil || apiErr.Message == "" {
			apiErr.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil, apiErr
	}
	return resp, nil
}

// Serve serves h on a unix socket at path, readable and writable by root only, until ctx ends. A
// stale socket file from an earlier run is replaced.
func Serve(ctx context.Context, path string, h http.Handler) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("cannot create socket dir: %w", err)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("cannot restrict %s to root: %w", path, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		_ = os.Remove(path)
		return nil
	case err := <-errc:
		return fmt.Errorf("api socket %s: %w", path, err)
	}
}
