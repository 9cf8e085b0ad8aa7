package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits of Client's zero values.
const (
	// DefaultMaxRange is the longest range QueryRange accepts when Client.MaxRange is zero.
	DefaultMaxRange = DefaultRetention + 24*time.Hour
	// DefaultMaxPoints bounds the points per series of a range query, as Prometheus does.
	DefaultMaxPoints = 11000
	// MaxExprLen is the longest expression accepted (VictoriaMetrics' -search.maxQueryLen).
	MaxExprLen = 16 << 10
)

// ErrInvalid marks errors caused by the caller's arguments or expression (an API answers them
// with 400), as opposed to the store being down.
var ErrInvalid = errors.New("invalid query")

func invalid(format string, args ...any) error {
	return fmt.Errorf("metrics: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Client queries VictoriaMetrics' Prometheus-compatible API (/api/v1/query and
// /api/v1/query_range). Its zero value is not useful: set BaseURL.
type Client struct {
	// BaseURL is the store, e.g. http://127.0.0.1:8428.
	BaseURL string
	// HTTP does the requests; nil means a client with a 60s timeout.
	HTTP *http.Client
	// MaxRange is the longest range QueryRange accepts (default DefaultMaxRange).
	MaxRange time.Duration
	// MaxPoints bounds (end-start)/step of QueryRange (default DefaultMaxPoints).
	MaxPoints int
}

// Result is the answer to a query.
type Result struct {
	// Type is VictoriaMetrics' result type: "vector" (Query), "matrix" (QueryRange) or
	// "scalar".
	Type string `json:"resultType"`
	// Series are the resulting series, each with one sample for a vector or scalar.
	Series []Series `json:"series"`
}

// Series is one time series of a Result.
type Series struct {
	Labels  map[string]string `json:"labels"`
	Samples []Sample          `json:"samples"`
}

// Sample is one point. It encodes as Prometheus does, [<unix seconds>, "<value>"], so NaN and
// ±Inf survive JSON.
type Sample struct {
	Time  time.Time
	Value float64
}

// MarshalJSON implements json.Marshaler.
func (s Sample) MarshalJSON() ([]byte, error) {
	ts := float64(s.Time.UnixMilli()) / 1000
	return json.Marshal([]any{json.Number(strconv.FormatFloat(ts, 'f', -1, 64)), formatValue(s.Value)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *Sample) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return fmt.Errorf("sample %s is not [time, value]: %w", b, err)
	}
	var ts float64
	if err := json.Unmarshal(pair[0], &ts); err != nil {
		return fmt.Errorf("sample time %s: %w", pair[0], err)
	}
	var v string
	if err := json.Unmarshal(pair[1], &v); err != nil {
		return fmt.Errorf("sample value %s is not a string: %w", pair[1], err)
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("sample value %q: %w", v, err)
	}
	s.Time = time.UnixMilli(int64(math.Round(ts * 1000))).UTC()
	s.Value = f
	return nil
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// Query evaluates expr at one instant (zero at means now) and returns a vector or scalar.
func (c *Client) Query(ctx context.Context, expr string, at time.Time) (*Result, error) {
	if err := checkExpr(expr); err != nil {
		return nil, err
	}
	form := url.Values{"query": {expr}}
	if !at.IsZero() {
		form.Set("time", formatTime(at))
	}
	return c.do(ctx, "/api/v1/query", expr, form)
}

// QueryRange evaluates expr at every step from start to end and returns a matrix. It refuses an
// empty or over-long expression, a step that is not positive, an end before start, a range
// longer than MaxRange and more than MaxPoints steps.
func (c *Client) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) (*Result, error) {
	if err := checkExpr(expr); err != nil {
		return nil, err
	}
	if err := c.CheckRange(start, end, step); err != nil {
		return nil, err
	}
	form := url.Values{"query": {expr}, "start": {formatTime(start)}, "end": {formatTime(end)}, "step": {promDuration(step)}}
	return c.do(ctx, "/api/v1/query_range", expr, form)
}

// CheckRange reports why QueryRange would refuse start, end and step, or nil.
func (c *Client) CheckRange(start, end time.Time, step time.Duration) error {
	if start.IsZero() || end.IsZero() {
		return invalid("a range query needs both a start and an end time")
	}
	if step <= 0 {
		return invalid("step %s must be positive", step)
	}
	if step < time.Millisecond {
		return invalid("step %s is shorter than 1ms", step)
	}
	if end.Before(start) {
		return invalid("end %s is before start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	maxRange := c.MaxRange
	if maxRange <= 0 {
		maxRange = DefaultMaxRange
	}
	if r := end.Sub(start); r > maxRange {
		return invalid("range %s is longer than the %s allowed", r.Round(time.Second), maxRange)
	}
	maxPoints := c.MaxPoints
	if maxPoints <= 0 {
		maxPoints = DefaultMaxPoints
	}
	if points := int64(end.Sub(start)/step) + 1; points > int64(maxPoints) {
		return invalid("range %s at step %s gives %d points per series, more than %d: use a larger step",
			end.Sub(start).Round(time.Second), step, points, maxPoints)
	}
	return nil
}

func checkExpr(expr string) error {
	if strings.TrimSpace(expr) == "" {
		return invalid("the expression is empty")
	}
	if len(expr) > MaxExprLen {
		return invalid("the expression is %d bytes long, more than %d", len(expr), MaxExprLen)
	}
	return nil
}

// formatTime renders t as unix seconds with millisecond precision.
func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}

// apiResponse is VictoriaMetrics' (and Prometheus') JSON envelope.
type apiResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	} `json:"data"`
}

func (c *Client) do(ctx context.Context, path, expr string, form url.Values) (*Result, error) {
	if c.BaseURL == "" {
		return nil, errors.New("metrics: client has no BaseURL")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 60 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("metrics: cannot build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: cannot query %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics: cannot read answer to %q: %w", expr, err)
	}
	var ar apiResponse
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, fmt.Errorf("metrics: %s answered %s: %s", path, resp.Status, snippet(body))
	}
	if ar.Status != "success" {
		msg := ar.Error
		if msg == "" {
			msg = resp.Status
		}
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity {
			return nil, fmt.Errorf("metrics: %w: %q: %s", ErrInvalid, expr, msg)
		}
		return nil, fmt.Errorf("metrics: query %q failed (%s): %s", expr, resp.Status, msg)
	}
	res, err := decodeResult(ar.Data.ResultType, ar.Data.Result)
	if err != nil {
		return nil, fmt.Errorf("metrics: cannot decode answer to %q: %w", expr, err)
	}
	return res, nil
}

func decodeResult(typ string, raw json.RawMessage) (*Result, error) {
	res := &Result{Type: typ, Series: []Series{}}
	switch typ {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  Sample            `json:"value"`
		}
		if err := json.Unmarshal(raw, &vec); err != nil {
			return nil, err
		}
		for _, v := range vec {
			res.Series = append(res.Series, Series{Labels: nonNil(v.Metric), Samples: []Sample{v.Value}})
		}
	case "matrix":
		var mat []struct {
			Metric map[string]string `json:"metric"`
			Values []Sample          `json:"values"`
		}
		if err := json.Unmarshal(raw, &mat); err != nil {
			return nil, err
		}
		for _, m := range mat {
			res.Series = append(res.Series, Series{Labels: nonNil(m.Metric), Samples: m.Values})
		}
	case "scalar":
		var s Sample
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		res.Series = append(res.Series, Series{Labels: map[string]string{}, Samples: []Sample{s}})
	default:
		return nil, fmt.Errorf("unsupported result type %q", typ)
	}
	return res, nil
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}
