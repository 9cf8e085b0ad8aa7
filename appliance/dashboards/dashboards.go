// Package dashboards turns the metrics store and the GitOps history into the data the console
// charts for one app environment: requests (when the app exports a request counter), CPU,
// memory and restarts over time, with the environment's deploys as annotations.
//
// It owns the panel definitions (which MetricsQL each panel runs) and the JSON shape of a
// dashboard. Queries go through a Querier (appliance/metrics' client in production) and
// deploys come from a History (the GitOps engine); the package keeps no state.
//
// Lifecycle: none; Build is a pure function of its inputs. The server wiring imports it.
package dashboards

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/metrics"
)

// Querier runs range queries (appliance/metrics.Client does).
type Querier interface {
	QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (*metrics.Result, error)
}

// History lists an environment's applied revisions (the GitOps engine's state does).
type History interface {
	History(app, env string) ([]state.Revision, error)
}

// Panel is one chart.
type Panel struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Unit  string `json:"unit"`
	// Query is the MetricsQL the panel ran, for "open in the query UI".
	Query  string           `json:"query"`
	Series []metrics.Series `json:"series"`
	// Error is set when this panel's query failed; the other panels still have data.
	Error string `json:"error,omitempty"`
}

// Annotation marks a deploy on the time axis.
type Annotation struct {
	Time     time.Time `json:"time"`
	Revision int       `json:"revision"`
	Commit   string    `json:"commit"`
	Reason   string    `json:"reason"`
}

// Dashboard is one environment's charts.
type Dashboard struct {
	App         string        `json:"app"`
	Env         string        `json:"env"`
	Namespace   string        `json:"namespace"`
	Start       time.Time     `json:"start"`
	End         time.Time     `json:"end"`
	Step        time.Duration `json:"step"`
	Panels      []Panel       `json:"panels"`
	Annotations []Annotation  `json:"annotations"`
}

// panelDef is a panel before its query runs; %s is the namespace selector value.
type panelDef struct {
	id, title, unit, query string
}

// panels are the charts of every environment. Requests use the common counter names apps
// export (http_requests_total, or http_server_requests_seconds_count from Micrometer); an app
// that exports neither simply has an empty requests panel.
var panels = []panelDef{
	{"requests", "Requests per second", "req/s",
		`sum by (pod) (rate({__name__=~"http_requests_total|http_server_requests_seconds_count|http_server_request_duration_seconds_count", namespace=%q}[5m]))`},
	{"cpu", "CPU", "cores",
		`sum by (pod) (rate(container_cpu_usage_seconds_total{namespace=%q, container!="", container!="POD"}[5m]))`},
	{"memory", "Memory (working set)", "bytes",
		`sum by (pod) (container_memory_working_set_bytes{namespace=%q, container!="", container!="POD"})`},
	{"restarts", "Container restarts", "restarts",
		`sum by (pod, container) (kube_pod_container_status_restarts_total{namespace=%q})`},
	{"available", "Available replicas", "replicas",
		`sum by (deployment) (kube_deployment_status_replicas_available{namespace=%q})`},
}

// MaxPoints bounds the points per series a dashboard asks for.
const MaxPoints = 1000

// Options choose the window.
type Options struct {
	// Since is how far back the charts go (default 6h); End is their end (default now).
	Since time.Duration
	End   time.Time
	// Step is the resolution; zero picks one that gives about 300 points.
	Step time.Duration
}

// Build queries every panel of app's env and collects its deploys. Bad arguments are errors;
// a failing panel query is reported on the panel.
func Build(ctx context.Context, q Querier, h History, app, env string, o Options) (*Dashboard, error) {
	if err := render.ValidateNames(app, env); err != nil {
		return nil, err
	}
	if o.Since == 0 {
		o.Since = 6 * time.Hour
	}
	if o.Since < 0 || o.Since > 31*24*time.Hour {
		return nil, fmt.Errorf("since %s is outside 0–31 days", o.Since)
	}
	if o.End.IsZero() {
		o.End = time.Now()
	}
	if o.Step == 0 {
		o.Step = (o.Since / 300).Round(time.Second)
		if o.Step < 15*time.Second {
			o.Step = 15 * time.Second
		}
	}
	if o.Step < time.Second {
		return nil, fmt.Errorf("step %s is below 1s", o.Step)
	}
	if int64(o.Since/o.Step) > MaxPoints {
		return nil, fmt.Errorf("since %s at step %s is more than %d points: use a larger step", o.Since, o.Step, MaxPoints)
	}
	ns := render.Namespace(app, env)
	start := o.End.Add(-o.Since)
	d := &Dashboard{App: app, Env: env, Namespace: ns, Start: start, End: o.End, Step: o.Step, Annotations: []Annotation{}}
	for _, p := range panels {
		panel := Panel{ID: p.id, Title: p.title, Unit: p.unit, Query: fmt.Sprintf(p.query, ns), Series: []metrics.Series{}}
		res, err := q.QueryRange(ctx, panel.Query, start, o.End, o.Step)
		switch {
		case err != nil:
			panel.Error = err.Error()
		case res != nil && res.Series != nil:
			panel.Series = res.Series
		}
		d.Panels = append(d.Panels, panel)
	}
	hist, err := h.History(app, env)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return nil, err
	}
	for _, r := range hist {
		if r.AppliedAt.Before(start) || r.AppliedAt.After(o.End) {
			continue
		}
		d.Annotations = append(d.Annotations, Annotation{Time: r.AppliedAt, Revision: r.N, Commit: r.Commit, Reason: r.Reason})
	}
	return d, nil
}
