package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/victoria"
)

// Limits of the client.
const (
	// DefaultLimit is how many lines Query returns when limit is 0.
	DefaultLimit = 1000
	// MaxLimit is the most lines one Query may ask for.
	MaxLimit = 50000
	// MaxQueryLen is the longest LogsQL query accepted (VictoriaLogs' -search.maxQueryLen).
	MaxQueryLen = 16 << 10
)

// ErrInvalid marks errors caused by the caller's arguments or query (an API answers them with
// 400), as opposed to the store being down.
var ErrInvalid = errors.New("invalid logs request")

func invalid(format string, args ...any) error {
	return fmt.Errorf("logs: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Client talks to VictoriaLogs' HTTP API: /select/logsql/query, /select/logsql/tail and
// /insert/jsonline. Its zero value is not useful: set BaseURL.
type Client struct {
	// BaseURL is the store, e.g. http://127.0.0.1:9428.
	BaseURL string
	// HTTP does the requests; nil means http.DefaultClient with a 60s bound on Query and
	// Ingest (Tail runs until its context ends).
	HTTP *http.Client
}

// Line is one log line.
type Line struct {
	// Time is the line's _time; Msg its _msg.
	Time time.Time
	Msg  string
	// Fields are all fields of the line. Query fills in every field VictoriaLogs returned,
	// _msg, _time and _stream included; Ingest sends them besides _msg and _time.
	Fields map[string]string
}

// Query runs a LogsQL query over [start, end] (a zero start means no lower bound, a zero end
// means now) and returns at most limit lines (0 means DefaultLimit): the newest ones, oldest
// first. It refuses an empty or over-long query, a negative or too large limit, and an end
// before start.
func (c *Client) Query(ctx context.Context, query string, limit int, start, end time.Time) ([]Line, error) {
	if err := checkQuery(query); err != nil {
		return nil, err
	}
	switch {
	case limit < 0:
		return nil, invalid("limit %d must not be negative", limit)
	case limit > MaxLimit:
		return nil, invalid("limit %d is more than the %d lines one query may return", limit, MaxLimit)
	case limit == 0:
		limit = DefaultLimit
	}
	if !start.IsZero() && !end.IsZero() && end.Before(start) {
		return nil, invalid("end %s is before start %s", end.Format(time.RFC3339), start.Format(time.RFC3339))
	}
	form := url.Values{"query": {query}, "limit": {strconv.Itoa(limit)}}
	if !start.IsZero() {
		form.Set("start", start.UTC().Format(time.RFC3339Nano))
	}
	if !end.IsZero() {
		form.Set("end", end.UTC().Format(time.RFC3339Nano))
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := c.post(ctx, "/select/logsql/query", query, form)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []Line
	err = readLines(resp.Body, func(l Line) error { lines = append(lines, l); return nil })
	if err != nil {
		return nil, fmt.Errorf("logs: cannot read the answer to %q: %w", query, err)
	}
	sortByTime(lines)
	return lines, nil
}

// Tail follows a LogsQL query: it calls each for every matching line, starting with those of the
// last since (0 means VictoriaLogs' default of 5s) and then every new one as it arrives, until
// ctx ends (it returns nil then) or each returns an error (which it returns). Lines arrive a few
// seconds after they were ingested; queries with stats pipes cannot be tailed.
func (c *Client) Tail(ctx context.Context, query string, since time.Duration, each func(Line) error) error {
	if err := checkQuery(query); err != nil {
		return err
	}
	if since < 0 {
		return invalid("since %s must not be negative", since)
	}
	form := url.Values{"query": {query}}
	if since > 0 {
		form.Set("start_offset", victoria.Duration(since))
	}
	resp, err := c.post(ctx, "/select/logsql/tail", query, form)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	err = readLines(resp.Body, each)
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		return fmt.Errorf("logs: the store ended the tail of %q", query)
	}
	return err
}

// Ingest stores lines through /insert/jsonline. streamFields name the fields that identify a
// line's stream (e.g. "source", "app", "build"): keep them few and low-cardinality. A line's
// zero Time means "now". Every line needs a message (Msg or a "_msg" field).
func (c *Client) Ingest(ctx context.Context, lines []Line, streamFields ...string) error {
	for _, f := range streamFields {
		if f == "" || strings.ContainsAny(f, ", ") {
			return invalid("stream field name %q is empty or contains a comma or space", f)
		}
	}
	if len(lines) == 0 {
		return nil
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for i, l := range lines {
		obj := make(map[string]string, len(l.Fields)+2)
		for k, v := range l.Fields {
			if k == "" {
				return invalid("line %d has a field with an empty name", i)
			}
			obj[k] = v
		}
		if l.Msg != "" {
			obj["_msg"] = l.Msg
		}
		if strings.TrimSpace(obj["_msg"]) == "" {
			return invalid("line %d has no message", i)
		}
		if !l.Time.IsZero() {
			obj["_time"] = l.Time.UTC().Format(time.RFC3339Nano)
		}
		if err := enc.Encode(obj); err != nil {
			return fmt.Errorf("logs: cannot encode line %d: %w", i, err)
		}
	}
	q := url.Values{"_msg_field": {"_msg"}, "_time_field": {"_time"}}
	if len(streamFields) > 0 {
		q.Set("_stream_fields", strings.Join(streamFields, ","))
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/insert/jsonline")+"?"+q.Encode(), &body)
	if err != nil {
		return fmt.Errorf("logs: cannot build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/stream+json")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("logs: cannot send %d lines to %s: %w", len(lines), c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("logs: ingesting %d lines: %s: %s", len(lines), resp.Status, victoria.Reply(resp.Body))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func checkQuery(query string) error {
	if strings.TrimSpace(query) == "" {
		return invalid("the query is empty (use * for every line)")
	}
	if len(query) > MaxQueryLen {
		return invalid("the query is %d bytes long, more than %d", len(query), MaxQueryLen)
	}
	return nil
}

func (c *Client) url(path string) string { return strings.TrimSuffix(c.BaseURL, "/") + path }

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

// post sends form to path and returns the response when it is 200 OK; VictoriaLogs' 400
// answers (a query it cannot parse) become ErrInvalid.
func (c *Client) post(ctx context.Context, path, query string, form url.Values) (*http.Response, error) {
	if c.BaseURL == "" {
		return nil, errors.New("logs: client has no BaseURL")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(path), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("logs: cannot build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("logs: cannot query %s: %w", c.BaseURL, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	msg := victoria.Reply(resp.Body)
	if resp.StatusCode == http.StatusBadRequest {
		return nil, fmt.Errorf("logs: %w: %q: %s", ErrInvalid, query, msg)
	}
	return nil, fmt.Errorf("logs: query %q failed (%s): %s", query, resp.Status, msg)
}

// readLines decodes VictoriaLogs' JSON-lines answer and calls each per line; it returns nil at
// the end of r.
func readLines(r io.Reader, each func(Line) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		l, err := parseLine(b)
		if err != nil {
			return err
		}
		if err := each(l); err != nil {
			return err
		}
	}
	return sc.Err()
}

func parseLine(b []byte) (Line, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return Line{}, fmt.Errorf("cannot parse line %.200q: %w", b, err)
	}
	l := Line{Fields: make(map[string]string, len(raw))}
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			s = string(v) // a number or object: keep its JSON text
		}
		l.Fields[k] = s
	}
	l.Msg = l.Fields["_msg"]
	if ts := l.Fields["_time"]; ts != "" {
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return Line{}, fmt.Errorf("line has a bad _time %q: %w", ts, err)
		}
		l.Time = t
	}
	return l, nil
}

// sortByTime puts lines oldest first when every line has a time (queries with stats pipes
// return lines without one, in the order the query gave them).
func sortByTime(lines []Line) {
	for _, l := range lines {
		if l.Time.IsZero() {
			return
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
}
