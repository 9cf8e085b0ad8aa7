package imagebuild

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRoutes(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{})
	r := tq.submit(t, "shop", "main", "one")
	tq.fake.waitStarted(t, "one")
	tq.fake.step(t, "one", fakeStep{line: "step 1"})
	tq.fake.step(t, "one", fakeStep{done: true})
	tq.wait(t, r.ID)
	mux := http.NewServeMux()
	tq.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	do := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := do("GET", "/v1/builds?app=shop")
	var list ListResponse
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Builds) != 1 || list.Builds[0].ID != r.ID {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := do("GET", "/v1/builds?app=nobody"); code != 200 || !strings.Contains(strings.Join(strings.Fields(body), ""), `"builds":[]`) {
		t.Fatalf("empty list: %d %s", code, body)
	}
	for _, c := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"GET", "/v1/builds?status=done", 400, "not one of queued"},
		{"GET", "/v1/builds?limit=-1", 400, "non-negative"},
		{"GET", "/v1/builds/" + r.ID, 200, `"status": "succeeded"`},
		{"GET", "/v1/builds/nope", 404, "gluebox build list"},
		{"GET", "/v1/builds/" + r.ID + "/logs", 200, "step 1"},
		{"POST", "/v1/builds/" + r.ID + "/cancel", 409, "already finished"},
	} {
		if code, body := do(c.method, c.path); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s = %d %q, want %d containing %q", c.method, c.path, code, body, c.code, c.want)
		}
	}
}
