package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// TestBuildsAndPreviews calls the builds and previews routes on a real build queue (its build
// function writes a log instead of running BuildKit) and a real preview store.
func TestBuildsAndPreviews(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	build := func(ctx context.Context, req imagebuild.Request, w io.Writer) (imagebuild.Result, error) {
		fmt.Fprintln(w, "step 1/1: built")
		return imagebuild.Result{Digest: "sha256:" + strings.Repeat("ab", 32)}, nil
	}
	q, err := imagebuild.NewQueue(imagebuild.QueueConfig{Dir: t.TempDir()}, build, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	prev, err := preview.New(preview.Config{Dir: t.TempDir()}, q.Index(), log)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, o := range []api.Registrar{q, prev} {
		o.Register(mux)
	}
	c := serve(t, mux)

	rec, err := q.Submit(imagebuild.Spec{App: "shop", Branch: "main", Commit: "c0ffee", Request: imagebuild.Request{ContextDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	var got imagebuild.Record
	testbin.Eventually(t, 30*time.Second, "build "+rec.ID+" to end", func() bool {
		if got, err = c.Build(ctx, rec.ID); err != nil {
			t.Fatal(err)
		}
		return got.Status.Final()
	})
	if got.Status != imagebuild.StatusSucceeded {
		t.Fatalf("build %s: %s %s", rec.ID, got.Status, got.Error)
	}
	list, err := c.Builds(ctx, imagebuild.Filter{App: "shop", Status: imagebuild.StatusSucceeded})
	if err != nil || len(list) != 1 || list[0].ID != rec.ID {
		t.Fatalf("Builds = %+v, %v", list, err)
	}
	if list, err := c.Builds(ctx, imagebuild.Filter{App: "other"}); err != nil || len(list) != 0 {
		t.Fatalf("Builds(other) = %+v, %v", list, err)
	}
	var logs bytes.Buffer
	if err := c.BuildLogs(ctx, rec.ID, true, &logs); err != nil || !strings.Contains(logs.String(), "step 1/1: built") {
		t.Fatalf("BuildLogs = %q, %v", logs.String(), err)
	}
	// The server's refusals arrive as they were written.
	_, err = c.Builds(ctx, imagebuild.Filter{Status: "sideways"})
	wantAPIError(t, err, http.StatusBadRequest, `status "sideways" is not one of queued, running, succeeded, failed, cancelled`)
	_, err = c.CancelBuild(ctx, rec.ID)
	if ae, ok := err.(*api.Error); !ok || ae.Status != http.StatusConflict {
		t.Fatalf("CancelBuild of a finished build = %v, want a 409", err)
	}
	_, err = c.Build(ctx, "999")
	if ae, ok := err.(*api.Error); !ok || ae.Status != http.StatusNotFound || !strings.Contains(ae.Message, "gluebox build list") {
		t.Fatalf("Build(999) = %v, want a 404 naming `gluebox build list`", err)
	}
	if ps, err := c.Previews(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("Previews = %+v, %v", ps, err)
	}
}
