package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/internal/victoria"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults of VMAlertConfig's zero values.
const (
	DefaultVMAlertPort        = 8880
	DefaultEvaluationInterval = 30 * time.Second
	// DefaultEvalDelay matches appliance/metrics' -search.latencyOffset (5s): vmalert evaluates
	// rules this far in the past so that the newest samples are visible.
	DefaultEvalDelay = 5 * time.Second
)

// Default hard limits of vmalert and Alertmanager, applied when their Config's Limits has a
// CgroupParent: they idle at ~22 and ~37 MiB RSS (README "Performance") and evaluate or route a
// handful of alerts, so 256 MiB leaves room for bursts of notifications and large rule results
// while half a core keeps them from competing with the node.
const (
	DefaultMemoryLimit = 256 << 20
	DefaultCPULimit    = 0.5
)

// defaultLimits fills the zero memory and CPU limits of l with DefaultMemoryLimit and
// DefaultCPULimit when l has a CgroupParent (without one there are no limits).
func defaultLimits(l supervise.Limits) supervise.Limits {
	if l.CgroupParent != "" {
		if l.MemoryBytes == 0 {
			l.MemoryBytes = DefaultMemoryLimit
		}
		if l.CPU == 0 {
			l.CPU = DefaultCPULimit
		}
	}
	return l
}

// UserRulesFile is the file (under VMAlertConfig.RulesDir) holding the user's rules;
// default rule files are named default-<asset name>.
const UserRulesFile = "user.yaml"

// VMAlertConfig configures vmalert. Every zero value means the documented default, except the
// ones marked required.
type VMAlertConfig struct {
	// Binary is the bundled vmalert program. Required.
	Binary string
	// Dir holds the rule files under Dir/rules, normally <data-dir>/alerts/vmalert. Required,
	// absolute.
	Dir string
	// LogFile receives vmalert's output; empty discards it.
	LogFile string
	// Port is vmalert's HTTP port on 127.0.0.1 (default 8880).
	Port int
	// MetricsURL is VictoriaMetrics' base URL: the datasource of metric rules and where alert
	// state is written to and restored from. Required.
	MetricsURL string
	// LogsURL is VictoriaLogs' base URL, the datasource of log rules; empty refuses log rules.
	LogsURL string
	// AlertmanagerURL is where notifications go, e.g. Alertmanager.URL(). Required.
	AlertmanagerURL string
	// EvaluationInterval is how often every rule is evaluated (default 30s).
	EvaluationInterval time.Duration
	// EvalDelay is how far in the past rules are evaluated (default 5s, see DefaultEvalDelay).
	EvalDelay time.Duration
	// ExternalURL is the base of links in notifications (vmalert's -external.url), e.g. the
	// console's alerts page; empty keeps vmalert's own address.
	ExternalURL string
	// RegistryDiskLimit is the registry size in bytes above which RegistryDiskHigh fires
	// (default 20 GiB).
	RegistryDiskLimit int64
	// CPUs is how many cores vmalert may use at once (GOMAXPROCS; default 1).
	CPUs int
	// Limits are the hard limits the kernel enforces on vmalert's cgroup (see
	// supervise.Limits). They apply only with Limits.CgroupParent set (the server uses
	// <cgroup root>/children); then zero values mean DefaultMemoryLimit and DefaultCPULimit,
	// negative ones no limit. `vmalert -dryRun` checks run outside them.
	Limits supervise.Limits
	// ExtraFlags override or add vmalert flags by name without the dash; they win over
	// gluebox's values.
	ExtraFlags map[string]string
}

// Validate reports the first setting that cannot work.
func (c VMAlertConfig) Validate() error {
	if c.Binary == "" {
		return errors.New("alerts: VMAlertConfig.Binary is required (the bundled vmalert program)")
	}
	if c.Dir == "" || !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("alerts: VMAlertConfig.Dir %q must be an absolute path", c.Dir)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("alerts: vmalert port %d is not a TCP port", c.Port)
	}
	for _, u := range []struct{ name, val string }{{"MetricsURL", c.MetricsURL}, {"AlertmanagerURL", c.AlertmanagerURL}, {"LogsURL", c.LogsURL}, {"ExternalURL", c.ExternalURL}} {
		if u.val == "" && (u.name == "LogsURL" || u.name == "ExternalURL") {
			continue
		}
		if err := checkHTTPURL(u.val); err != nil {
			return fmt.Errorf("alerts: VMAlertConfig.%s: %w", u.name, err)
		}
	}
	if c.EvaluationInterval < 0 || (c.EvaluationInterval > 0 && c.EvaluationInterval < time.Second) {
		return fmt.Errorf("alerts: evaluation interval %s is shorter than 1s", c.EvaluationInterval)
	}
	if c.EvalDelay < 0 || c.RegistryDiskLimit < 0 || c.CPUs < 0 {
		return errors.New("alerts: EvalDelay, RegistryDiskLimit and CPUs must not be negative")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("alerts: vmalert %w", err)
	}
	return nil
}

func (c *VMAlertConfig) defaults() {
	if c.Port == 0 {
		c.Port = DefaultVMAlertPort
	}
	if c.EvaluationInterval == 0 {
		c.EvaluationInterval = DefaultEvaluationInterval
	}
	if c.EvalDelay == 0 {
		c.EvalDelay = DefaultEvalDelay
	}
	if c.RegistryDiskLimit == 0 {
		c.RegistryDiskLimit = DefaultRegistryDiskLimit
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	c.Limits = defaultLimits(c.Limits)
}

// RulesDir is where the rule files are, read by vmalert as RulesDir/*.yaml.
func (c VMAlertConfig) RulesDir() string { return filepath.Join(c.Dir, "rules") }

// VMAlertArgs returns vmalert's command line for cfg (after defaults) with datasource as
// -datasource.url: gluebox's values overridden by cfg.ExtraFlags, sorted by name.
func VMAlertArgs(cfg VMAlertConfig, datasource string) []string {
	flags := map[string]string{
		"httpListenAddr":     net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		"rule":               filepath.Join(cfg.RulesDir(), "*.yaml"),
		"datasource.url":     datasource,
		"remoteWrite.url":    cfg.MetricsURL,
		"remoteRead.url":     cfg.MetricsURL,
		"notifier.url":       cfg.AlertmanagerURL,
		"evaluationInterval": cfg.EvaluationInterval.String(), // a Go duration flag
		"rule.evalDelay":     cfg.EvalDelay.String(),
		// Rules are checked before they are written; a reload must never half-apply.
		"rule.validateExpressions": "true",
		"rule.validateTemplates":   "true",
		"loggerFormat":             "json",
	}
	if cfg.ExternalURL != "" {
		flags["external.url"] = cfg.ExternalURL
	}
	return victoria.Args(flags, cfg.ExtraFlags)
}

// VMAlert runs vmalert. Use NewVMAlert, then Run; WaitReady tells when it serves.
type VMAlert struct {
	cfg   VMAlertConfig
	log   *slog.Logger
	child *supervise.Child
	// router sends log queries to VictoriaLogs and the rest to VictoriaMetrics; nil without
	// LogsURL. Its listener is opened by NewVMAlert so that the port is in vmalert's flags.
	router   *http.Server
	routerLn net.Listener

	mu        sync.Mutex // serializes SetUserRules
	user      []UserRule
	closeOnce sync.Once
}

var _ supervise.Component = (*VMAlert)(nil)

// NewVMAlert validates cfg, creates the rules directory, writes the default rule files (and
// removes rule files it no longer writes, except the user's) and prepares the child; nothing
// runs until Run.
func NewVMAlert(cfg VMAlertConfig, log *slog.Logger) (*VMAlert, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "vmalert")
	if err := os.MkdirAll(cfg.RulesDir(), 0o750); err != nil {
		return nil, fmt.Errorf("alerts: cannot create %s: %w", cfg.RulesDir(), err)
	}
	files, err := DefaultRuleFiles(cfg.RegistryDiskLimit)
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{UserRulesFile: true}
	for name, data := range files {
		keep["default-"+name] = true
		if err := atomicfile.WriteFile(filepath.Join(cfg.RulesDir(), "default-"+name), data, 0o640); err != nil {
			return nil, fmt.Errorf("alerts: cannot write default rules: %w", err)
		}
	}
	old, _ := filepath.Glob(filepath.Join(cfg.RulesDir(), "*.yaml"))
	for _, f := range old {
		if !keep[filepath.Base(f)] {
			if err := os.Remove(f); err != nil {
				return nil, fmt.Errorf("alerts: cannot remove stale rule file: %w", err)
			}
		}
	}
	v := &VMAlert{cfg: cfg, log: log}
	datasource := cfg.MetricsURL
	if cfg.LogsURL != "" {
		v.router, v.routerLn, err = newDatasourceRouter(cfg.MetricsURL, cfg.LogsURL)
		if err != nil {
			return nil, err
		}
		datasource = "http://" + v.routerLn.Addr().String()
	}
	health := v.URL() + "/health"
	v.child = supervise.NewChild(supervise.ChildConfig{
		Name:    "vmalert",
		Path:    cfg.Binary,
		Args:    VMAlertArgs(cfg, datasource),
		Env:     []string{"GOMAXPROCS=" + strconv.Itoa(cfg.CPUs), "GOGC=50"}, // small heaps: idle memory matters more than GC CPU here
		Dir:     cfg.Dir,
		LogFile: cfg.LogFile,
		Ready:   func(ctx context.Context) error { return victoria.Health(ctx, health) },
		Limits:  cfg.Limits,
	}, log)
	return v, nil
}

// newDatasourceRouter listens on a free loopback port and routes VictoriaLogs' query paths
// (/select/logsql/...) to logsURL and everything else to metricsURL.
func newDatasourceRouter(metricsURL, logsURL string) (*http.Server, net.Listener, error) {
	mu, err := url.Parse(metricsURL)
	if err != nil {
		return nil, nil, err
	}
	lu, err := url.Parse(logsURL)
	if err != nil {
		return nil, nil, err
	}
	metrics, logs := httputil.NewSingleHostReverseProxy(mu), httputil.NewSingleHostReverseProxy(lu)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("alerts: cannot listen for the datasource router: %w", err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/select/logsql/") {
			logs.ServeHTTP(w, r)
			return
		}
		metrics.ServeHTTP(w, r)
	})
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ln, nil
}

// Name implements supervise.Component.
func (v *VMAlert) Name() string { return "vmalert" }

// Run implements supervise.Component: it runs vmalert (and the datasource router) until ctx
// ends and returns nil then, or an error when vmalert keeps dying. Run once: the router's
// port, reserved by NewVMAlert, is released when Run returns.
func (v *VMAlert) Run(ctx context.Context) error {
	if v.router != nil {
		go func() {
			if err := v.router.Serve(v.routerLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				v.log.Error("datasource router stopped", "err", err)
			}
		}()
		defer v.closeRouter()
	}
	return v.child.Run(ctx)
}

func (v *VMAlert) closeRouter() {
	v.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = v.router.Shutdown(ctx)
	})
}

// WaitReady implements supervise.Component: it returns once /health has answered OK.
func (v *VMAlert) WaitReady(ctx context.Context) error {
	select {
	case <-v.child.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// State reports the child's state for `gluebox status`.
func (v *VMAlert) State() supervise.ChildState { return v.child.State() }

// URL is vmalert's base URL, e.g. http://127.0.0.1:8880.
func (v *VMAlert) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(v.cfg.Port))
}

// UserRules returns the user rules that are running (the last SetUserRules' valid ones).
func (v *VMAlert) UserRules() []UserRule {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.user)
}

// SetUserRules replaces the user's rules. Rules gluebox or `vmalert -dryRun` rejects are
// dropped, each with a *RuleError in dropped naming the rule (and its platform.yaml line);
// the others are written and vmalert reloads them. Receiver names are not checked here (see
// ValidateUserRules). err is about the change as a whole (vmalert could not be run, the file
// not written, the reload not confirmed); the rules that ran before keep running then.
func (v *VMAlert) SetUserRules(ctx context.Context, rules []UserRule) (dropped []*RuleError, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	valid, verr := ValidateUserRules(rules, nil)
	dropped = ruleErrors(verr)
	if v.cfg.LogsURL == "" {
		kept := valid[:0]
		for _, r := range valid {
			if r.Logs != "" {
				dropped = append(dropped, r.ruleError(errors.New("log rules need the log store (VictoriaLogs), which is not configured")))
				continue
			}
			kept = append(kept, r)
		}
		valid = kept
	}
	valid, checkDropped, err := v.check(ctx, valid)
	if err != nil {
		return dropped, err
	}
	dropped = append(dropped, checkDropped...)
	path := filepath.Join(v.cfg.RulesDir(), UserRulesFile)
	if len(valid) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return dropped, fmt.Errorf("alerts: cannot remove %s: %w", path, err)
		}
	} else {
		data, err := UserRuleFile(valid)
		if err != nil {
			return dropped, err
		}
		if err := atomicfile.WriteFile(path, data, 0o640); err != nil {
			return dropped, fmt.Errorf("alerts: cannot write user rules: %w", err)
		}
	}
	v.user = valid
	for _, d := range dropped {
		v.log.Warn("alert rule dropped", "err", d)
	}
	if v.child.State().State != "running" {
		return dropped, nil // vmalert reads the files when it starts
	}
	return dropped, v.reload(ctx, valid)
}

// check runs vmalert -dryRun on the rules until it accepts what is left; a rule it rejects
// is dropped with its error.
func (v *VMAlert) check(ctx context.Context, rules []UserRule) ([]UserRule, []*RuleError, error) {
	var dropped []*RuleError
	dir, err := os.MkdirTemp(v.cfg.Dir, "check-")
	if err != nil {
		return nil, nil, fmt.Errorf("alerts: cannot check rules: %w", err)
	}
	defer os.RemoveAll(dir)
	// Each pass drops at least one rule, so this ends; vmalert reports all bad groups at once,
	// so it normally takes one pass.
	for len(rules) > 0 {
		data, err := UserRuleFile(rules)
		if err != nil {
			return nil, nil, err
		}
		file := filepath.Join(dir, UserRulesFile)
		if err := os.WriteFile(file, data, 0o640); err != nil {
			return nil, nil, fmt.Errorf("alerts: cannot check rules: %w", err)
		}
		found, err := Check(ctx, v.cfg.Binary, []string{file})
		if err != nil {
			return nil, nil, err
		}
		if len(found) == 0 {
			break
		}
		bad := map[string]error{}
		for _, f := range found {
			name := f.Rule
			if name == "" {
				name = strings.TrimPrefix(f.Group, UserGroupPrefix)
			}
			bad[name] = f.Err
		}
		kept := rules[:0:0]
		for _, r := range rules {
			if e, ok := bad[r.Name]; ok {
				dropped = append(dropped, r.ruleError(fmt.Errorf("vmalert: %w", e)))
				continue
			}
			kept = append(kept, r)
		}
		if len(kept) == len(rules) {
			return nil, nil, fmt.Errorf("alerts: vmalert rejected the rules without naming one: %v", found[0])
		}
		rules = kept
	}
	return rules, dropped, nil
}

// reload asks vmalert to re-read its rule files and waits until it runs exactly the user
// rules given (plus the defaults).
func (v *VMAlert) reload(ctx context.Context, rules []UserRule) error {
	want := make([]string, 0, len(rules))
	for _, r := range rules {
		want = append(want, UserGroupPrefix+r.Name)
	}
	slices.Sort(want)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := doJSON(ctx, nil, http.MethodPost, v.URL()+"/-/reload", nil, nil); err != nil {
		return fmt.Errorf("alerts: cannot reload vmalert: %w", err)
	}
	var last error
	for {
		groups, err := v.Groups(ctx)
		if err == nil {
			var got []string
			for _, g := range groups {
				if strings.HasPrefix(g, UserGroupPrefix) {
					got = append(got, g)
				}
			}
			slices.Sort(got)
			if slices.Equal(got, want) {
				return nil
			}
			err = fmt.Errorf("vmalert runs user groups %q, want %q", got, want)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("alerts: vmalert did not apply the new rules: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Groups returns the names of the rule groups vmalert runs.
func (v *VMAlert) Groups(ctx context.Context) ([]string, error) {
	var out struct {
		Data struct {
			Groups []struct {
				Name string `json:"name"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := doJSON(ctx, nil, http.MethodGet, v.URL()+"/api/v1/rules", nil, &out); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(out.Data.Groups))
	for _, g := range out.Data.Groups {
		names = append(names, g.Name)
	}
	return names, nil
}

func ruleErrors(err error) []*RuleError {
	if err == nil {
		return nil
	}
	var out []*RuleError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			var re *RuleError
			if errors.As(e, &re) {
				out = append(out, re)
			}
		}
		return out
	}
	var re *RuleError
	if errors.As(err, &re) {
		out = append(out, re)
	}
	return out
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
