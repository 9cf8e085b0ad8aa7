package dashboards

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/metrics"
)

// recorder answers range queries from a table keyed by a substring of the expression.
type recorder struct {
	queries []string
	answers map[string]*metrics.Result
	fail    string
}

func (r *recorder) QueryRange(_ context.Context, expr string, start, end time.Time, step time.Duration) (*metrics.Result, error) {
	r.queries = append(r.queries, expr)
	if r.fail != "" && strings.Contains(expr, r.fail) {
		return nil, errors.New("store unavailable")
	}
	for k, v := range r.answers {
		if strings.Contains(expr, k) {
			return v, nil
		}
	}
	return &metrics.Result{Type: "matrix"}, nil
}

type history []state.Revision

func (h history) History(app, env string) ([]state.Revision, error) { return h, nil }

func TestBuild(t *testing.T) {
	end := time.Unix(1_800_000_000, 0)
	cpu := &metrics.Result{Type: "matrix", Series: []metrics.Series{{Labels: map[string]string{"pod": "web-1"}, Samples: []metrics.Sample{{Time: end, Value: 0.25}}}}}
	q := &recorder{answers: map[string]*metrics.Result{"container_cpu_usage_seconds_total": cpu}, fail: "working_set"}
	h := history{
		{N: 1, Commit: "aaa", AppliedAt: end.Add(-10 * time.Hour), Reason: "sync"},
		{N: 2, Commit: "bbb", AppliedAt: end.Add(-time.Hour), Reason: "sync"},
		{N: 3, Commit: "aaa", AppliedAt: end.Add(-time.Minute), Reason: "rollback to 1"},
	}
	d, err := Build(context.Background(), q, h, "web", "prod", Options{End: end})
	if err != nil {
		t.Fatal(err)
	}
	if d.Namespace != "web-prod" || d.Step != 72*time.Second || !d.Start.Equal(end.Add(-6*time.Hour)) {
		t.Fatalf("window: %+v", d)
	}
	if len(q.queries) != len(panels) {
		t.Fatalf("ran %d queries", len(q.queries))
	}
	for _, expr := range q.queries {
		if !strings.Contains(expr, `namespace="web-prod"`) {
			t.Fatalf("query not scoped to the environment: %s", expr)
		}
	}
	byID := map[string]Panel{}
	for _, p := range d.Panels {
		byID[p.ID] = p
	}
	if len(byID["cpu"].Series) != 1 || byID["cpu"].Series[0].Samples[0].Value != 0.25 {
		t.Fatalf("cpu panel: %+v", byID["cpu"])
	}
	if byID["memory"].Error == "" || byID["requests"].Error != "" || byID["requests"].Series == nil {
		t.Fatalf("a failing panel should carry its error and the others stay usable: %+v", d.Panels)
	}
	if len(d.Annotations) != 2 || d.Annotations[0].Revision != 2 || d.Annotations[1].Reason != "rollback to 1" {
		t.Fatalf("annotations: %+v", d.Annotations)
	}
}

func TestBuildRefusesBadArguments(t *testing.T) {
	q, h := &recorder{}, history{}
	for _, tc := range []struct {
		app, env string
		o        Options
		want     string
	}{
		{"Web", "prod", Options{}, "Web"},
		{"web", "prod", Options{Since: -time.Hour}, "outside"},
		{"web", "prod", Options{Since: 24 * time.Hour, Step: time.Second}, "more than"},
		{"web", "prod", Options{Step: time.Millisecond}, "below 1s"},
	} {
		if _, err := Build(context.Background(), q, h, tc.app, tc.env, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%s, %s, %+v) = %v, want an error containing %q", tc.app, tc.env, tc.o, err, tc.want)
		}
	}
	if len(q.queries) != 0 {
		t.Fatalf("queries ran for bad arguments: %v", q.queries)
	}
}
