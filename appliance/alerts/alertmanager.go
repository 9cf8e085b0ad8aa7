package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/internal/victoria"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults of Notify's and AlertmanagerConfig's zero values.
const (
	DefaultAlertmanagerPort  = 9093
	DefaultGroupWait         = 30 * time.Second
	DefaultGroupInterval     = 5 * time.Minute
	DefaultRepeatInterval    = 4 * time.Hour
	DefaultHeartbeatInterval = time.Minute
	// DefaultRetention is how long Alertmanager keeps silences and its notification log after
	// they expire (--data.retention).
	DefaultRetention = 120 * time.Hour
)

// Receiver names gluebox reserves in the generated configuration.
const (
	// DefaultReceiverName receives what no other route takes when Notify.DefaultReceiver is
	// empty: it sends to every configured receiver.
	DefaultReceiverName = "default"
	// HeartbeatReceiverName receives only the GlueboxHeartbeat alert.
	HeartbeatReceiverName = "gluebox-heartbeat"
)

// Notify is how Alertmanager routes and sends notifications: alerts are grouped by alertname,
// app and env, so one notification covers one problem of one environment. Zero durations mean
// the documented defaults.
type Notify struct {
	// GroupWait is how long a new group of alerts waits for more before the first
	// notification (default 30s).
	GroupWait time.Duration
	// GroupInterval is how long a group waits before notifying about changes (new alerts,
	// resolved alerts; default 5m).
	GroupInterval time.Duration
	// RepeatInterval is how long before a notification that changed nothing is sent again
	// (default 4h).
	RepeatInterval time.Duration
	// Receivers are where notifications go. An alert whose receiver label names one goes there
	// alone; every other alert goes to DefaultReceiver.
	Receivers []Receiver
	// DefaultReceiver names the receiver of alerts without a receiver label; empty sends them
	// to every receiver.
	DefaultReceiver string
	// Heartbeat is the dead man's switch.
	Heartbeat Heartbeat
}

// Receiver is one named destination; it sends to each integration that is set (at least one).
type Receiver struct {
	// Name is a DNS label (lowercase letters, digits, '-'), not "default" or
	// "gluebox-heartbeat"; rules name it in their receiver field.
	Name    string
	Webhook *Webhook
	Slack   *Slack
	Email   *Email
}

// Webhook POSTs Alertmanager's JSON notification to URL.
type Webhook struct {
	// URL is an http(s) URL.
	URL string
	// MaxAlerts bounds the alerts in one notification; zero means all.
	MaxAlerts int
}

// Slack posts to a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat...).
type Slack struct {
	// APIURL is the incoming webhook's URL (a secret: it carries the token).
	APIURL string
	// Channel overrides the webhook's channel, e.g. "#alerts"; optional.
	Channel string
}

// Email sends mail through an SMTP server. The caller reads the credentials from the secret
// store.
type Email struct {
	// To is one or more addresses, comma separated; From the sender's address.
	To, From string
	// Smarthost is the SMTP server as host:port, e.g. smtp.example.com:587.
	Smarthost string
	// Username and Password authenticate to the server (PLAIN/LOGIN/CRAM-MD5, as offered);
	// empty means no authentication.
	Username, Password string
	// RequireTLS, when not nil, says whether STARTTLS is required (Alertmanager's default:
	// true).
	RequireTLS *bool
}

// Heartbeat calls URL every Interval while alerting works end to end (rule evaluation,
// Alertmanager, its outgoing HTTP); an outside service alerts when the calls stop.
type Heartbeat struct {
	// URL receives Alertmanager's webhook POST; empty sends the heartbeat nowhere.
	URL string
	// Interval between calls (default 1m; at least 1s).
	Interval time.Duration
}

func (n *Notify) defaults() {
	if n.GroupWait == 0 {
		n.GroupWait = DefaultGroupWait
	}
	if n.GroupInterval == 0 {
		n.GroupInterval = DefaultGroupInterval
	}
	if n.RepeatInterval == 0 {
		n.RepeatInterval = DefaultRepeatInterval
	}
	if n.Heartbeat.Interval == 0 {
		n.Heartbeat.Interval = DefaultHeartbeatInterval
	}
}

var smtpHostPortRE = regexp.MustCompile(`^[A-Za-z0-9.\-\[\]:]+$`)

// Validate reports everything that is wrong, joined, naming the receiver.
func (n Notify) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("alerts: "+format, args...)) }
	if n.GroupWait < 0 || n.GroupInterval < 0 || n.RepeatInterval < 0 || n.Heartbeat.Interval < 0 {
		bad("group wait, group interval, repeat interval and heartbeat interval must not be negative")
	}
	if n.Heartbeat.Interval != 0 && n.Heartbeat.Interval < time.Second {
		bad("heartbeat interval %s is shorter than 1s", n.Heartbeat.Interval)
	}
	if n.Heartbeat.URL != "" {
		if err := checkNotifyURL(n.Heartbeat.URL); err != nil {
			bad("heartbeat URL: %v", err)
		}
	}
	names := map[string]bool{}
	for i, r := range n.Receivers {
		where := fmt.Sprintf("receiver %q", r.Name)
		switch {
		case !receiverNameRE.MatchString(r.Name):
			bad("receivers[%d]: name %q is not a DNS label (lowercase letters, digits and '-')", i, r.Name)
		case r.Name == DefaultReceiverName || r.Name == HeartbeatReceiverName:
			bad("receivers[%d]: name %q is reserved", i, r.Name)
		case names[r.Name]:
			bad("receivers[%d]: name %q is used twice", i, r.Name)
		}
		names[r.Name] = true
		if r.Webhook == nil && r.Slack == nil && r.Email == nil {
			bad("%s: set a webhook, slack or email destination", where)
		}
		if w := r.Webhook; w != nil {
			if err := checkNotifyURL(w.URL); err != nil {
				bad("%s: webhook URL: %v", where, err)
			}
			if w.MaxAlerts < 0 {
				bad("%s: webhook max alerts %d is negative", where, w.MaxAlerts)
			}
		}
		if s := r.Slack; s != nil {
			if err := checkNotifyURL(s.APIURL); err != nil {
				bad("%s: slack API URL: %v", where, err)
			}
			if !plainText(s.Channel) {
				bad("%s: slack channel %q must be plain text", where, s.Channel)
			}
		}
		if e := r.Email; e != nil {
			for _, to := range strings.Split(e.To, ",") {
				if _, err := mail.ParseAddress(strings.TrimSpace(to)); err != nil || !plainText(to) {
					bad("%s: email to %q is not an address", where, strings.TrimSpace(to))
				}
			}
			if _, err := mail.ParseAddress(e.From); err != nil || !plainText(e.From) {
				bad("%s: email from %q is not an address", where, e.From)
			}
			host, port, err := net.SplitHostPort(e.Smarthost)
			if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 || !smtpHostPortRE.MatchString(e.Smarthost) {
				bad("%s: email smarthost %q is not host:port", where, e.Smarthost)
			}
			if e.Password != "" && e.Username == "" {
				bad("%s: email password given without a username", where)
			}
			if !plainText(e.Username) || strings.ContainsAny(e.Password, "\x00") {
				bad("%s: email username must be plain text", where)
			}
		}
	}
	if n.DefaultReceiver != "" && !names[n.DefaultReceiver] {
		bad("default receiver %q is not one of the receivers", n.DefaultReceiver)
	}
	return errors.Join(errs...)
}

// ReceiverNames returns the names rules may use in their receiver field.
func (n Notify) ReceiverNames() []string {
	names := make([]string, 0, len(n.Receivers))
	for _, r := range n.Receivers {
		names = append(names, r.Name)
	}
	return names
}

// plainText reports whether s can go into Alertmanager's configuration without being read as
// a template or an environment reference.
func plainText(s string) bool {
	return !strings.Contains(s, "{{") && !strings.ContainsAny(s, "\x00\n\r")
}

func checkNotifyURL(s string) error {
	if err := checkHTTPURL(s); err != nil {
		return err
	}
	if !plainText(s) {
		return fmt.Errorf("%q must not contain templates or line breaks", s)
	}
	return nil
}

// amConfig is alertmanager.yml, as much of it as gluebox writes.
type amConfig struct {
	Route     amRoute      `yaml:"route"`
	Receivers []amReceiver `yaml:"receivers"`
}

type amRoute struct {
	Receiver       string    `yaml:"receiver"`
	Matchers       []string  `yaml:"matchers,omitempty"`
	GroupBy        []string  `yaml:"group_by,omitempty"`
	GroupWait      string    `yaml:"group_wait,omitempty"`
	GroupInterval  string    `yaml:"group_interval,omitempty"`
	RepeatInterval string    `yaml:"repeat_interval,omitempty"`
	Routes         []amRoute `yaml:"routes,omitempty"`
}

type amReceiver struct {
	Name           string      `yaml:"name"`
	WebhookConfigs []amWebhook `yaml:"webhook_configs,omitempty"`
	SlackConfigs   []amSlack   `yaml:"slack_configs,omitempty"`
	EmailConfigs   []amEmail   `yaml:"email_configs,omitempty"`
}

type amWebhook struct {
	SendResolved bool   `yaml:"send_resolved"`
	URL          string `yaml:"url"`
	MaxAlerts    int    `yaml:"max_alerts,omitempty"`
}

type amSlack struct {
	SendResolved bool   `yaml:"send_resolved"`
	APIURL       string `yaml:"api_url"`
	Channel      string `yaml:"channel,omitempty"`
	Title        string `yaml:"title"`
	Text         string `yaml:"text"`
}

type amEmail struct {
	SendResolved bool   `yaml:"send_resolved"`
	To           string `yaml:"to"`
	From         string `yaml:"from"`
	Smarthost    string `yaml:"smarthost"`
	AuthUsername string `yaml:"auth_username,omitempty"`
	AuthPassword string `yaml:"auth_password,omitempty"`
	RequireTLS   *bool  `yaml:"require_tls,omitempty"`
}

// Notification texts for Slack: the summary of every alert, then a link back.
const (
	slackTitle = `[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] {{ .CommonLabels.alertname }}{{ if .CommonLabels.app }} {{ .CommonLabels.app }}/{{ .CommonLabels.env }}{{ end }}`
	slackText  = `{{ range .Alerts }}{{ if .Annotations.summary }}{{ .Annotations.summary }}{{ else }}{{ .Labels.alertname }}{{ end }}{{ if .Annotations.description }}: {{ .Annotations.description }}{{ end }}` + "\n" + `{{ end }}`
)

// RenderAlertmanagerConfig returns the alertmanager.yml for n (after defaults). It holds
// secrets (SMTP password, Slack URL): write it readable by gluebox only.
func RenderAlertmanagerConfig(n Notify) ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	n.defaults()
	dur := victoria.Duration
	// Repeats are only sent at group_interval ticks, and repeat_interval is measured from when
	// the previous notification was logged, a little after its tick: stay a bit shorter than
	// the interval so that every tick repeats (see the package doc).
	hb := n.Heartbeat.Interval
	hbRepeat := hb - min(hb/6, 10*time.Second)
	cfg := amConfig{
		Route: amRoute{
			Receiver:       DefaultReceiverName,
			GroupBy:        []string{"alertname", "app", "env"},
			GroupWait:      dur(n.GroupWait),
			GroupInterval:  dur(n.GroupInterval),
			RepeatInterval: dur(n.RepeatInterval),
			Routes: []amRoute{{
				Receiver:       HeartbeatReceiverName,
				Matchers:       []string{fmt.Sprintf("alertname=%q", HeartbeatAlert)},
				GroupBy:        []string{"alertname"},
				GroupWait:      "0s",
				GroupInterval:  dur(hb),
				RepeatInterval: dur(hbRepeat),
			}},
		},
	}
	if n.DefaultReceiver != "" {
		cfg.Route.Receiver = n.DefaultReceiver
	}
	all := amReceiver{Name: DefaultReceiverName}
	heartbeat := amReceiver{Name: HeartbeatReceiverName}
	if n.Heartbeat.URL != "" {
		// A resolved heartbeat would look like a sign of life to the service behind the URL.
		heartbeat.WebhookConfigs = []amWebhook{{URL: n.Heartbeat.URL, SendResolved: false}}
	}
	var named []amReceiver
	for _, r := range n.Receivers {
		ar := amReceiver{Name: r.Name}
		if w := r.Webhook; w != nil {
			ar.WebhookConfigs = []amWebhook{{SendResolved: true, URL: w.URL, MaxAlerts: w.MaxAlerts}}
		}
		if s := r.Slack; s != nil {
			ar.SlackConfigs = []amSlack{{SendResolved: true, APIURL: s.APIURL, Channel: s.Channel, Title: slackTitle, Text: slackText}}
		}
		if e := r.Email; e != nil {
			ar.EmailConfigs = []amEmail{{SendResolved: true, To: e.To, From: e.From, Smarthost: e.Smarthost,
				AuthUsername: e.Username, AuthPassword: e.Password, RequireTLS: e.RequireTLS}}
		}
		all.WebhookConfigs = append(all.WebhookConfigs, ar.WebhookConfigs...)
		all.SlackConfigs = append(all.SlackConfigs, ar.SlackConfigs...)
		all.EmailConfigs = append(all.EmailConfigs, ar.EmailConfigs...)
		named = append(named, ar)
		cfg.Route.Routes = append(cfg.Route.Routes, amRoute{
			Receiver: r.Name,
			Matchers: []string{fmt.Sprintf("receiver=%q", r.Name)},
		})
	}
	if n.DefaultReceiver == "" {
		cfg.Receivers = append(cfg.Receivers, all)
	}
	cfg.Receivers = append(cfg.Receivers, heartbeat)
	sort.SliceStable(named, func(i, j int) bool { return named[i].Name < named[j].Name })
	cfg.Receivers = append(cfg.Receivers, named...)
	return marshalYAML(cfg)
}

// AlertmanagerConfig configures Alertmanager. Every zero value means the documented default,
// except Binary and Dir, which are required.
type AlertmanagerConfig struct {
	// Binary is the bundled alertmanager program. Required.
	Binary string
	// Dir holds the generated Dir/alertmanager.yml and the silences and notification log under
	// Dir/data; normally <data-dir>/alerts/alertmanager. Required, absolute.
	Dir string
	// LogFile receives Alertmanager's output; empty discards it.
	LogFile string
	// Port is the HTTP port on 127.0.0.1 (default 9093). Clustering is always off.
	Port int
	// Notify is the routing and the receivers.
	Notify Notify
	// ExternalURL is the base of links in notifications (--web.external-url); empty means
	// Alertmanager's own address.
	ExternalURL string
	// Retention is how long expired silences and the notification log are kept (default 120h).
	Retention time.Duration
	// CPUs is how many cores Alertmanager may use at once (GOMAXPROCS; default 1).
	CPUs int
	// Limits are the hard limits the kernel enforces on Alertmanager's cgroup (see
	// supervise.Limits). They apply only with Limits.CgroupParent set (the server uses
	// <cgroup root>/children); then zero values mean DefaultMemoryLimit and DefaultCPULimit,
	// negative ones no limit.
	Limits supervise.Limits
	// ExtraFlags override or add Alertmanager flags by name without the dashes, e.g.
	// {"log.level": "debug"}; they win over gluebox's values.
	ExtraFlags map[string]string
}

// Validate reports the first settings that cannot work.
func (c AlertmanagerConfig) Validate() error {
	if c.Binary == "" {
		return errors.New("alerts: AlertmanagerConfig.Binary is required (the bundled alertmanager program)")
	}
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("alerts: AlertmanagerConfig.Dir %q must be an absolute path", c.Dir)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("alerts: alertmanager port %d is not a TCP port", c.Port)
	}
	if c.ExternalURL != "" {
		if err := checkHTTPURL(c.ExternalURL); err != nil {
			return fmt.Errorf("alerts: AlertmanagerConfig.ExternalURL: %w", err)
		}
	}
	if c.Retention < 0 || c.CPUs < 0 {
		return errors.New("alerts: Retention and CPUs must not be negative")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("alerts: alertmanager %w", err)
	}
	return c.Notify.Validate()
}

func (c *AlertmanagerConfig) defaults() {
	if c.Port == 0 {
		c.Port = DefaultAlertmanagerPort
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	c.Limits = defaultLimits(c.Limits)
}

// ConfigFile is the generated alertmanager.yml.
func (c AlertmanagerConfig) ConfigFile() string { return filepath.Join(c.Dir, "alertmanager.yml") }

// DataDir holds the silences and the notification log.
func (c AlertmanagerConfig) DataDir() string { return filepath.Join(c.Dir, "data") }

// AlertmanagerArgs returns Alertmanager's command line for cfg (after defaults): gluebox's
// values overridden by cfg.ExtraFlags, sorted by name, in Alertmanager's --name=value form.
func AlertmanagerArgs(cfg AlertmanagerConfig) []string {
	flags := map[string]string{
		"config.file":            cfg.ConfigFile(),
		"storage.path":           cfg.DataDir(),
		"web.listen-address":     net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		"cluster.listen-address": "", // no gossip: one Alertmanager per server
		"data.retention":         cfg.Retention.String(),
		"log.format":             "json",
	}
	if cfg.ExternalURL != "" {
		flags["web.external-url"] = cfg.ExternalURL
	}
	for k, v := range cfg.ExtraFlags {
		flags[strings.TrimLeft(k, "-")] = v
	}
	keys := make([]string, 0, len(flags))
	for k := range flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, "--"+k+"="+flags[k])
	}
	return args
}

// Alertmanager runs Alertmanager. Use NewAlertmanager, then Run; WaitReady tells when it
// serves.
type Alertmanager struct {
	cfg   AlertmanagerConfig
	log   *slog.Logger
	child *supervise.Child
	mu    sync.Mutex // serializes Apply
}

var _ supervise.Component = (*Alertmanager)(nil)

// NewAlertmanager validates cfg, creates the directories, writes alertmanager.yml (mode 0600:
// it holds secrets) and prepares the child; nothing runs until Run.
func NewAlertmanager(cfg AlertmanagerConfig, log *slog.Logger) (*Alertmanager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "alertmanager")
	if err := os.MkdirAll(cfg.DataDir(), 0o700); err != nil {
		return nil, fmt.Errorf("alerts: cannot create %s: %w", cfg.DataDir(), err)
	}
	data, err := RenderAlertmanagerConfig(cfg.Notify)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(cfg.ConfigFile(), data, 0o600); err != nil {
		return nil, fmt.Errorf("alerts: cannot write alertmanager config: %w", err)
	}
	a := &Alertmanager{cfg: cfg, log: log}
	ready := a.URL() + "/-/ready"
	a.child = supervise.NewChild(supervise.ChildConfig{
		Name:    "alertmanager",
		Path:    cfg.Binary,
		Args:    AlertmanagerArgs(cfg),
		Env:     []string{"GOMAXPROCS=" + strconv.Itoa(cfg.CPUs), "GOGC=50"}, // small heaps: idle memory matters more than GC CPU here
		Dir:     cfg.Dir,
		LogFile: cfg.LogFile,
		Ready:   func(ctx context.Context) error { return victoria.Health(ctx, ready) },
		Limits:  cfg.Limits,
	}, log)
	return a, nil
}

// Name implements supervise.Component.
func (a *Alertmanager) Name() string { return "alertmanager" }

// Run implements supervise.Component: it runs Alertmanager until ctx ends and returns nil
// then, or an error when it keeps dying (e.g. a configuration it refuses; see its log).
func (a *Alertmanager) Run(ctx context.Context) error { return a.child.Run(ctx) }

// WaitReady implements supervise.Component: it returns once /-/ready has answered OK.
func (a *Alertmanager) WaitReady(ctx context.Context) error {
	select {
	case <-a.child.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State reports the child's state for `gluebox status`.
func (a *Alertmanager) State() supervise.ChildState { return a.child.State() }

// URL is Alertmanager's base URL, e.g. http://127.0.0.1:9093: vmalert's -notifier.url.
func (a *Alertmanager) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(a.cfg.Port))
}

// Client returns an API client for this Alertmanager.
func (a *Alertmanager) Client() *Client { return &Client{BaseURL: a.URL()} }

// Apply replaces the routing and receivers. While Alertmanager runs, it writes the new
// alertmanager.yml and asks Alertmanager to reload it; when Alertmanager refuses it, the
// previous file is put back (and reloaded) and the error carries Alertmanager's reason.
// Otherwise the file is read at the next start.
func (a *Alertmanager) Apply(ctx context.Context, n Notify) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	data, err := RenderAlertmanagerConfig(n)
	if err != nil {
		return err
	}
	path := a.cfg.ConfigFile()
	prev, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("alerts: cannot read %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("alerts: cannot write alertmanager config: %w", err)
	}
	if a.child.State().State != "running" {
		a.cfg.Notify = n
		return nil
	}
	if err := a.reload(ctx); err != nil {
		if werr := atomicfile.WriteFile(path, prev, 0o600); werr != nil {
			return fmt.Errorf("alerts: alertmanager refused the new config (%w) and the old one cannot be restored: %v", err, werr)
		}
		if rerr := a.reload(ctx); rerr != nil {
			a.log.Error("cannot reload the previous config", "err", rerr)
		}
		return fmt.Errorf("alerts: alertmanager refused the new config: %w", err)
	}
	a.cfg.Notify = n
	return nil
}

func (a *Alertmanager) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return doJSON(ctx, nil, "POST", a.URL()+"/-/reload", nil, nil)
}
