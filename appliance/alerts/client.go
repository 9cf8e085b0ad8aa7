package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/victoria"
)

// Client talks to Alertmanager's API v2: the alerts it holds and the silences. The zero
// HTTP uses a client with a 10s timeout.
type Client struct {
	// BaseURL is Alertmanager's base URL, e.g. http://127.0.0.1:9093.
	BaseURL string
	// HTTP is the client to use; nil means one with a 10s timeout.
	HTTP *http.Client
}

// Matcher selects alerts by one label: Name=Value, Name!=Value, Name=~Regex or Name!~Regex.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	// IsEqual false negates the match (!= or !~).
	IsEqual bool `json:"isEqual"`
}

// String formats m in Alertmanager's matcher syntax, e.g. app="shop" or env!~"pr-.*".
func (m Matcher) String() string {
	op := "="
	switch {
	case m.IsRegex && m.IsEqual:
		op = "=~"
	case m.IsRegex:
		op = "!~"
	case !m.IsEqual:
		op = "!="
	}
	return m.Name + op + strconv.Quote(m.Value)
}

var matcherRE = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$`)

// ParseMatcher parses name=value, name!=value, name=~regex or name!~regex; the value may be
// double-quoted. A regex must compile (Alertmanager anchors it).
func ParseMatcher(s string) (Matcher, error) {
	m := matcherRE.FindStringSubmatch(s)
	if m == nil {
		return Matcher{}, fmt.Errorf("alerts: matcher %q: want label=value, label!=value, label=~regex or label!~regex", s)
	}
	val := m[3]
	if strings.HasPrefix(val, `"`) {
		u, err := strconv.Unquote(val)
		if err != nil {
			return Matcher{}, fmt.Errorf("alerts: matcher %q: bad quoted value: %w", s, err)
		}
		val = u
	}
	out := Matcher{Name: m[1], Value: val, IsRegex: strings.HasSuffix(m[2], "~"), IsEqual: strings.HasPrefix(m[2], "=")}
	if out.IsRegex {
		if _, err := regexp.Compile("^(?:" + val + ")$"); err != nil {
			return Matcher{}, fmt.Errorf("alerts: matcher %q: %w", s, err)
		}
	}
	return out, nil
}

// Alert is an alert as Alertmanager holds it.
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
	Fingerprint  string            `json:"fingerprint"`
	GeneratorURL string            `json:"generatorURL"`
	Status       AlertStatus       `json:"status"`
	Receivers    []struct {
		Name string `json:"name"`
	} `json:"receivers"`
}

// AlertStatus says whether an alert is active, suppressed (silenced or inhibited) or
// unprocessed, and by what.
type AlertStatus struct {
	State       string   `json:"state"`
	SilencedBy  []string `json:"silencedBy"`
	InhibitedBy []string `json:"inhibitedBy"`
}

// Silence mutes the alerts its matchers select between StartsAt and EndsAt.
type Silence struct {
	ID        string    `json:"id,omitempty"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	Status    struct {
		// State is pending, active or expired.
		State string `json:"state"`
	} `json:"status,omitzero"`
}

// NewSilence is what Silence needs to create a silence starting now.
type NewSilence struct {
	Matchers  []Matcher
	Duration  time.Duration
	CreatedBy string
	Comment   string
}

// Alerts returns the alerts Alertmanager holds (active, silenced and inhibited) that match
// every matcher.
func (c *Client) Alerts(ctx context.Context, matchers ...Matcher) ([]Alert, error) {
	q := url.Values{}
	for _, m := range matchers {
		q.Add("filter", m.String())
	}
	var out []Alert
	if err := c.do(ctx, http.MethodGet, "/api/v2/alerts", q, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Silence creates a silence from now for s.Duration and returns its ID.
func (c *Client) Silence(ctx context.Context, s NewSilence) (string, error) {
	switch {
	case len(s.Matchers) == 0:
		return "", errors.New("alerts: a silence needs at least one matcher")
	case s.Duration <= 0:
		return "", fmt.Errorf("alerts: silence duration %s must be positive", s.Duration)
	case strings.TrimSpace(s.CreatedBy) == "" || strings.TrimSpace(s.Comment) == "":
		return "", errors.New("alerts: a silence needs createdBy and a comment")
	}
	now := time.Now().UTC()
	body := Silence{Matchers: s.Matchers, StartsAt: now, EndsAt: now.Add(s.Duration), CreatedBy: s.CreatedBy, Comment: s.Comment}
	var out struct {
		SilenceID string `json:"silenceID"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v2/silences", nil, body, &out); err != nil {
		return "", err
	}
	return out.SilenceID, nil
}

// Silences returns every silence Alertmanager knows, expired ones included until its
// retention drops them.
func (c *Client) Silences(ctx context.Context) ([]Silence, error) {
	var out []Silence
	if err := c.do(ctx, http.MethodGet, "/api/v2/silences", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ExpireSilence ends the silence with the given ID now.
func (c *Client) ExpireSilence(ctx context.Context, id string) error {
	if id == "" || strings.ContainsAny(id, "/?#") {
		return fmt.Errorf("alerts: %q is not a silence ID", id)
	}
	return c.do(ctx, http.MethodDelete, "/api/v2/silence/"+url.PathEscape(id), nil, nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	u := strings.TrimSuffix(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	if err := doJSON(ctx, c.HTTP, method, u, body, out); err != nil {
		return fmt.Errorf("alerts: alertmanager: %w", err)
	}
	return nil
}

// doJSON sends a request with body (when not nil) as JSON and decodes a JSON answer into out
// (when not nil); an answer other than 2xx is an error carrying the body's start. A nil hc
// means a client with a 10s timeout.
func doJSON(ctx context.Context, hc *http.Client, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s answered %s: %s", method, url, resp.Status, victoria.Reply(resp.Body))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: cannot decode the answer: %w", method, url, err)
	}
	return nil
}
