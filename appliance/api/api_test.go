package api

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClientServerRoundTrip(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/echo", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, 200, map[string]string{"q": r.URL.Query().Get("q")})
	})
	mux.HandleFunc("POST /v1/fail", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Name string }
		if err := DecodeJSON(r, 1<<10, &in); err != nil {
			WriteError(w, err)
			return
		}
		WriteError(w, Errorf(http.StatusConflict, "%s exists", in.Name))
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, mux) }()
	t.Cleanup(func() { cancel(); <-done })

	c := NewClient(sock)
	var out map[string]string
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.Do(ctx, "GET", "/v1/echo?q=hi", nil, &out)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out["q"] != "hi" {
		t.Fatalf("echo answered %v", out)
	}
	err := c.Do(ctx, "POST", "/v1/fail", map[string]string{"Name": "x"}, nil)
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Message != "x exists" {
		t.Fatalf("want 409 'x exists', got %#v", err)
	}
	err = c.Do(ctx, "POST", "/v1/fail", map[string]string{"Nmae": "x"}, nil)
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("unknown field: want 400, got %v", err)
	}
}

func TestClientWithoutServer(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "missing.sock"))
	err := c.Do(context.Background(), "GET", "/v1/status", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "gluebox server is not running") {
		t.Fatalf("want a clear not-running error, got %v", err)
	}
}
