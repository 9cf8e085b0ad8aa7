package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRoutePath(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern string
		args    []string
		want    string
	}{
		{"no wildcard", "/v1/apps", nil, "/v1/apps"},
		{"segments", "/v1/apps/{app}/{env}", []string{"web", "prod"}, "/v1/apps/web/prod"},
		{"segment with slash and space", "/v1/alerts/silences/{id}", []string{"a/b c"}, "/v1/alerts/silences/a%2Fb%20c"},
		{"segment with query and fragment characters", "/v1/x/{id}", []string{"a?b#c%d"}, "/v1/x/a%3Fb%23c%25d"},
		{"rest keeps slashes", "/v1/secrets/{path...}", []string{"secret/my app/db"}, "/v1/secrets/secret/my%20app/db"},
		{"rest escapes each segment", "/v1/secrets/{path...}", []string{"secret/a?b/c%"}, "/v1/secrets/secret/a%3Fb/c%25"},
		{"middle and trailing text", "/v1/apps/{app}/{env}/revisions/{n}/manifest", []string{"a", "b", "3"}, "/v1/apps/a/b/revisions/3/manifest"},
		{"end anchor", "/v1/things/{$}", nil, "/v1/things/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Route{Method: http.MethodGet, Pattern: tc.pattern}.Path(tc.args...)
			if got != tc.want {
				t.Errorf("Path(%q) = %q, want %q", tc.args, got, tc.want)
			}
		})
	}
}

// TestRoutePathRoundTrip checks that what Path builds, the mux hands back to the handler as
// the original arguments.
func TestRoutePathRoundTrip(t *testing.T) {
	r := Route{Method: http.MethodGet, Pattern: "/v1/t/{one}/{rest...}"}
	mux := http.NewServeMux()
	var got []string
	r.Register(mux, func(w http.ResponseWriter, req *http.Request) {
		got = []string{req.PathValue("one"), req.PathValue("rest")}
	})
	want := []string{"a/b?c d%", "x y/z#/ü"}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, r.Path(want...), nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d for %s", rec.Code, r.Path(want...))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("path values (-want +got):\n%s", diff)
	}
}

func TestRoutePathArgumentCount(t *testing.T) {
	r := Route{Method: http.MethodGet, Pattern: "/v1/apps/{app}/{env}"}
	for _, args := range [][]string{{"a"}, {"a", "b", "c"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Path(%q) did not panic", args)
				}
			}()
			r.Path(args...)
		}()
	}
}
