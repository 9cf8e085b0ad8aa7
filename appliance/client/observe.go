package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"

	"github.com/gluebox/gluebox/appliance/alerts"
	"github.com/gluebox/gluebox/appliance/dashboards"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
)

// MetricsQuery evaluates an expression at one time.
func (c *Client) MetricsQuery(ctx context.Context, req metrics.QueryRequest) (metrics.Result, error) {
	var out metrics.Result
	return out, c.call(ctx, metrics.RouteQuery, nil, req.Values(), nil, &out)
}

// MetricsQueryRange evaluates an expression over a time range.
func (c *Client) MetricsQueryRange(ctx context.Context, req metrics.RangeRequest) (metrics.Result, error) {
	var out metrics.Result
	return out, c.call(ctx, metrics.RouteQueryRange, nil, req.Values(), nil, &out)
}

// Logs returns the newest matching log lines.
func (c *Client) Logs(ctx context.Context, req logs.Request) ([]logs.LogLine, error) {
	var out []logs.LogLine
	return out, c.call(ctx, logs.RouteQuery, nil, req.Values(), nil, &out)
}

// TailLogs calls each for every matching line, old ones since req.Since first, then new ones as
// they come, until ctx ends (nil), each returns an error (that error) or the server reports one.
func (c *Client) TailLogs(ctx context.Context, req logs.Request, each func(logs.LogLine) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A refused request (*api.Error) reaches readTail through the pipe, unchanged.
		pw.CloseWithError(c.stream(ctx, logs.RouteTail, nil, req.Values(), pw))
	}()
	err := readTail(pr, each)
	cancel()
	pr.Close()
	<-done
	return err
}

// tailLine is a line of the tail stream: a log line, or an error the server met after the
// answer had started.
type tailLine struct {
	logs.LogLine
	Error string `json:"error"`
}

func readTail(r io.Reader, each func(logs.LogLine) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l tailLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("cannot decode log line %q: %w", sc.Bytes(), err)
		}
		if l.Error != "" {
			return errors.New(l.Error)
		}
		if err := each(l.LogLine); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Dashboard returns the dashboard of app's env.
func (c *Client) Dashboard(ctx context.Context, app, env string, o dashboards.Options) (dashboards.Dashboard, error) {
	var out dashboards.Dashboard
	return out, c.call(ctx, dashboards.RouteDashboard, []string{app, env}, o.Values(), nil, &out)
}

// Alerts lists the alerts Alertmanager holds, filtered by matchers such as alertname=X.
func (c *Client) Alerts(ctx context.Context, match []string) ([]alerts.Alert, error) {
	var q url.Values
	if len(match) > 0 {
		q = url.Values{"match": match}
	}
	var out []alerts.Alert
	return out, c.call(ctx, alerts.RouteAlerts, nil, q, nil, &out)
}

// Silences lists the silences.
func (c *Client) Silences(ctx context.Context) ([]alerts.Silence, error) {
	return get[[]alerts.Silence](ctx, c, alerts.RouteSilences)
}

// Silence silences the alerts matching every matcher of req.
func (c *Client) Silence(ctx context.Context, req alerts.SilenceRequest) (alerts.SilenceAnswer, error) {
	var out alerts.SilenceAnswer
	return out, c.call(ctx, alerts.RouteSilence, nil, nil, req, &out)
}

// ExpireSilence expires the silence id now.
func (c *Client) ExpireSilence(ctx context.Context, id string) (alerts.ExpireAnswer, error) {
	var out alerts.ExpireAnswer
	return out, c.call(ctx, alerts.RouteExpireSilence, []string{id}, nil, nil, &out)
}

// AlertRules lists the alert rules running and the platform.yaml rules left out.
func (c *Client) AlertRules(ctx context.Context) (alerts.RulesStatus, error) {
	return get[alerts.RulesStatus](ctx, c, alerts.RouteRules)
}
