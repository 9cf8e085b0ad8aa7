package victoria

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestArgs(t *testing.T) {
	got := Args(map[string]string{"b": "2", "a": "1", "c": "3"}, map[string]string{"-c": "x", "d": ""})
	want := []string{"-a=1", "-b=2", "-c=x", "-d="}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 30 * 24 * time.Hour: "30d", 36 * time.Hour: "36h", 15 * time.Second: "15s",
		2 * time.Minute: "2m", 1500 * time.Millisecond: "1500ms",
	} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "OK")
		case "/starting":
			io.WriteString(w, "starting")
		default:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if err := Health(ctx, srv.URL+"/ok"); err != nil {
		t.Errorf("OK answer: %v", err)
	}
	for _, p := range []string{"/starting", "/down"} {
		if err := Health(ctx, srv.URL+p); err == nil {
			t.Errorf("%s counted as healthy", p)
		}
	}
}

func TestDirSize(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]int{"x": 10, "a/y": 20, "a/b/z": 30} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := DirSize(dir); err != nil || got != 60 {
		t.Errorf("DirSize = %d, %v; want 60", got, err)
	}
	if got, err := DirSize(filepath.Join(dir, "missing")); err != nil || got != 0 {
		t.Errorf("DirSize(missing) = %d, %v; want 0, nil", got, err)
	}
}
