package alerts

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gluebox/gluebox/assets"
)

// Severities a rule may carry in its severity label.
const (
	SeverityCritical = "critical"
	SeverityWarning  = "warning"
	SeverityInfo     = "info"
)

// HeartbeatAlert is the name of the default rule that always fires; Alertmanager routes it to
// the heartbeat receiver only.
const HeartbeatAlert = "GlueboxHeartbeat"

// DefaultRegistryDiskLimit is the registry size above which RegistryDiskHigh fires when
// VMAlertConfig.RegistryDiskLimit is zero.
const DefaultRegistryDiskLimit = 20 << 30

// PlatformFile names platform.yaml in errors about user rules.
const PlatformFile = "platform.yaml"

// UserRule is one entry of platform.yaml's alerts: list:
//
//	alerts:
//	  - name: ShopErrors
//	    expr: sum(rate(http_requests_total{app="shop",code=~"5.."}[5m])) > 1
//	    for: 5m
//	    severity: critical
//	    summary: shop answers 5xx
//	    receiver: ops
//	  - name: ShopPanics
//	    logs: '{app="shop"} panic'
//
// Exactly one of Expr (MetricsQL, evaluated against VictoriaMetrics) and Logs (LogsQL,
// evaluated against VictoriaLogs) is set. A Logs query without a stats pipe fires when any
// line matched during the last evaluation interval (gluebox appends
// `| stats count() as lines | filter lines:>0`); one with a stats pipe must filter its own
// result, or it fires on every evaluation.
type UserRule struct {
	// Name is the alert's name (its alertname label): a letter, then letters, digits, '_',
	// '.' or '-', at most 100 characters; unique, and not one of gluebox's default rules.
	Name string `yaml:"name" json:"name"`
	// Expr is a MetricsQL expression; the alert fires for every series it returns.
	Expr string `yaml:"expr,omitempty" json:"expr,omitempty"`
	// Logs is a LogsQL query.
	Logs string `yaml:"logs,omitempty" json:"logs,omitempty"`
	// For is how long the condition must hold before the alert fires, e.g. "5m" (units ms, s,
	// m, h, d, w); empty fires at once.
	For string `yaml:"for,omitempty" json:"for,omitempty"`
	// Severity is critical, warning (the default) or info.
	Severity string `yaml:"severity,omitempty" json:"severity,omitempty"`
	// Summary is the one-line text of the notification (default: the name). It may use
	// vmalert's templates, e.g. {{ $labels.app }} or {{ $value }}.
	Summary string `yaml:"summary,omitempty" json:"summary,omitempty"`
	// Description is the longer text of the notification; optional.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Receiver names the Alertmanager receiver that gets the alert; empty means the default
	// route.
	Receiver string `yaml:"receiver,omitempty" json:"receiver,omitempty"`
	// Labels are added to the alert, e.g. app and env for grouping.
	Labels map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`

	// Index and Line say where the rule is in platform.yaml: its position in the alerts: list
	// and its line (0 when unknown). ParseUserRules sets them.
	Index int `yaml:"-" json:"-"`
	Line  int `yaml:"-" json:"-"`
}

// RuleError is a problem with one rule, found by gluebox or by vmalert. A rejected rule is
// dropped; the others keep running.
type RuleError struct {
	// Rule is the rule's (alert's) name; empty when the problem concerns a whole group or file.
	Rule string
	// Group and File say where vmalert found it (Check); empty for platform.yaml rules.
	Group string
	File  string
	// Index and Line locate a platform.yaml rule: position in alerts: (-1 when unknown) and line
	// (0 when unknown).
	Index int
	Line  int
	// Err is what is wrong.
	Err error
}

// Error says where the rule is and what is wrong, e.g.
// `platform.yaml:12: alerts[1] rule "ShopErrors": for: "5x" is not a duration ...`.
func (e *RuleError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Index >= 0 {
		fmt.Fprintf(&b, "alerts[%d] ", e.Index)
	}
	switch {
	case e.Rule != "":
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	case e.Group != "":
		fmt.Fprintf(&b, "group %q: ", e.Group)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns Err.
func (e *RuleError) Unwrap() error { return e.Err }

var (
	ruleNameRE     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,99}$`)
	labelNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	receiverNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	durationRE     = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w))+$`)
	durationPartRE = regexp.MustCompile(`([0-9]+)(ms|s|m|h|d|w)`)
	statsPipeRE    = regexp.MustCompile(`\|\s*stats\b`)
)

// reservedLabels are set from UserRule fields or by vmalert and Alertmanager themselves.
var reservedLabels = map[string]string{
	"alertname":  "the rule's name",
	"severity":   "the severity field",
	"receiver":   "the receiver field",
	"alertgroup": "vmalert's group name",
}

const maxQueryLen = 16 << 10

// Validate reports what is wrong with the rule on its own, joined; receivers, when not nil,
// are the receiver names the rule may use.
func (r UserRule) Validate(receivers []string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !ruleNameRE.MatchString(r.Name) {
		bad("name %q: use a letter, then letters, digits, '_', '.' or '-' (at most 100)", r.Name)
	}
	switch {
	case strings.TrimSpace(r.Expr) == "" && strings.TrimSpace(r.Logs) == "":
		bad("set expr (a MetricsQL expression) or logs (a LogsQL query)")
	case r.Expr != "" && r.Logs != "":
		bad("set only one of expr (MetricsQL) and logs (LogsQL)")
	case len(r.Expr) > maxQueryLen || len(r.Logs) > maxQueryLen:
		bad("the query is longer than %d bytes", maxQueryLen)
	}
	if r.For != "" {
		if _, err := parseDuration(r.For); err != nil {
			bad("for: %v", err)
		}
	}
	switch r.Severity {
	case "", SeverityCritical, SeverityWarning, SeverityInfo:
	default:
		bad("severity %q: use critical, warning or info", r.Severity)
	}
	if r.Receiver != "" {
		switch {
		case !receiverNameRE.MatchString(r.Receiver):
			bad("receiver %q is not a receiver name (lowercase letters, digits and '-')", r.Receiver)
		case receivers != nil && !contains(receivers, r.Receiver):
			bad("receiver %q is not configured (have: %s)", r.Receiver, strings.Join(receivers, ", "))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if !labelNameRE.MatchString(k) || strings.HasPrefix(k, "__") {
			bad("labels: %q is not a label name", k)
		} else if what, ok := reservedLabels[k]; ok {
			bad("labels: %q is set from %s", k, what)
		}
	}
	// vmalert replaces %{NAME} in rule files with its environment; a user's text must not reach it.
	for _, f := range []struct{ key, val string }{{"expr", r.Expr}, {"logs", r.Logs}, {"summary", r.Summary}, {"description", r.Description}} {
		if strings.Contains(f.val, "%{") {
			bad("%s must not contain %%{ (vmalert reads it as an environment variable)", f.key)
		}
		if strings.ContainsRune(f.val, 0) {
			bad("%s contains a NUL byte", f.key)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		if v := r.Labels[k]; strings.Contains(v, "%{") || strings.Contains(v, "{{") {
			bad("labels.%s must be plain text", k)
		}
	}
	return errors.Join(errs...)
}

// ValidateUserRules checks rules on their own and against each other (names unique, none
// taken by a default rule). It returns the valid ones and, joined, a *RuleError for each rule
// it dropped. receivers, when not nil, are the receiver names rules may use.
func ValidateUserRules(rules []UserRule, receivers []string) ([]UserRule, error) {
	defaults, err := DefaultRuleNames()
	if err != nil {
		return nil, err
	}
	var valid []UserRule
	var errs []error
	seen := map[string]bool{}
	for _, r := range rules {
		err := r.Validate(receivers)
		switch {
		case err != nil:
		case defaults[r.Name]:
			err = fmt.Errorf("name %q is taken by one of gluebox's default rules", r.Name)
		case seen[r.Name]:
			err = fmt.Errorf("name %q is used by another rule", r.Name)
		}
		if err != nil {
			errs = append(errs, r.ruleError(err))
			continue
		}
		seen[r.Name] = true
		valid = append(valid, r)
	}
	return valid, errors.Join(errs...)
}

func (r UserRule) ruleError(err error) *RuleError {
	e := &RuleError{Rule: r.Name, Index: -1, Err: err}
	if r.Line > 0 {
		e.File, e.Index, e.Line = PlatformFile, r.Index, r.Line
	}
	return e
}

// userRuleKeys are the keys an alerts: entry may have.
var userRuleKeys = map[string]bool{"name": true, "expr": true, "logs": true, "for": true, "severity": true,
	"summary": true, "description": true, "receiver": true, "labels": true}

// ParseUserRules reads the alerts: list of platform.yaml (data is the whole file; other keys
// are ignored) and returns its rules with Index and Line set. An entry that cannot be decoded
// (unknown key, wrong type) is dropped with a *RuleError naming its line; the rules
// themselves are not validated (see ValidateUserRules).
func ParseUserRules(data []byte) ([]UserRule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", PlatformFile, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil
	}
	var list *yaml.Node
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "alerts" {
			list = top.Content[i+1]
		}
	}
	if list == nil || list.Tag == "!!null" {
		return nil, nil
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: alerts must be a list of rules", PlatformFile, list.Line)
	}
	var rules []UserRule
	var errs []error
	for i, n := range list.Content {
		r, err := decodeUserRule(n)
		r.Index, r.Line = i, n.Line
		if err != nil {
			errs = append(errs, r.ruleError(err))
			continue
		}
		rules = append(rules, r)
	}
	return rules, errors.Join(errs...)
}

func decodeUserRule(n *yaml.Node) (UserRule, error) {
	var r UserRule
	if n.Kind != yaml.MappingNode {
		return r, errors.New("must be a mapping with name and expr or logs")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; k.Value == "name" {
			r.Name = n.Content[i+1].Value
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !userRuleKeys[k.Value] {
			return r, fmt.Errorf("line %d: unknown key %q (known: name, expr, logs, for, severity, summary, description, receiver, labels)", k.Line, k.Value)
		}
	}
	if err := n.Decode(&r); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return r, errors.New(strings.Join(te.Errors, "; "))
		}
		return r, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return r, nil
}

// LogsStatsSuffix is appended to a Logs query without a stats pipe.
const LogsStatsSuffix = " | stats count() as lines | filter lines:>0"

// UserGroupPrefix starts the vmalert group name of every user rule ("platform.yaml/<name>").
const UserGroupPrefix = PlatformFile + "/"

// UserRuleFile renders rules as a vmalert rule file: one group per rule, named
// UserGroupPrefix+name, so that vmalert reports (and gluebox drops) a bad rule alone. The
// rules are expected to be valid (ValidateUserRules).
func UserRuleFile(rules []UserRule) ([]byte, error) {
	f := ruleFile{Groups: []ruleGroup{}}
	for _, r := range rules {
		g := ruleGroup{Name: UserGroupPrefix + r.Name}
		rule := vmRule{Alert: r.Name, Expr: strings.TrimSpace(r.Expr), For: r.For,
			Labels: map[string]string{}, Annotations: map[string]string{}}
		if r.Logs != "" {
			g.Type = "vlogs"
			rule.Expr = strings.TrimSpace(r.Logs)
			if !statsPipeRE.MatchString(rule.Expr) {
				rule.Expr += LogsStatsSuffix
			}
		}
		for k, v := range r.Labels {
			rule.Labels[k] = v
		}
		rule.Labels["severity"] = r.Severity
		if r.Severity == "" {
			rule.Labels["severity"] = SeverityWarning
		}
		if r.Receiver != "" {
			rule.Labels["receiver"] = r.Receiver
		}
		rule.Annotations["summary"] = r.Summary
		if r.Summary == "" {
			rule.Annotations["summary"] = r.Name + " is firing"
		}
		if r.Description != "" {
			rule.Annotations["description"] = r.Description
		}
		g.Rules = []vmRule{rule}
		f.Groups = append(f.Groups, g)
	}
	return marshalYAML(f)
}

// ruleFile is vmalert's rule file format, as much of it as gluebox writes.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string   `yaml:"name"`
	Type  string   `yaml:"type,omitempty"`
	Rules []vmRule `yaml:"rules"`
}

type vmRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("alerts: cannot encode YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DefaultRuleFiles returns gluebox's default rule files (assets/alerts) by file name, with
// their placeholders replaced: registryDiskLimit is the registry size in bytes above which
// RegistryDiskHigh fires (0 means DefaultRegistryDiskLimit).
func DefaultRuleFiles(registryDiskLimit int64) (map[string][]byte, error) {
	if registryDiskLimit == 0 {
		registryDiskLimit = DefaultRegistryDiskLimit
	}
	if registryDiskLimit < 0 {
		return nil, fmt.Errorf("alerts: registry disk limit %d is negative", registryDiskLimit)
	}
	repl := strings.NewReplacer("%{GLUEBOX_REGISTRY_DISK_LIMIT_BYTES}", strconv.FormatInt(registryDiskLimit, 10))
	files := map[string][]byte{}
	err := fs.WalkDir(assets.AlertRules(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(assets.AlertRules(), path)
		if err != nil {
			return err
		}
		out := repl.Replace(string(data))
		if i := strings.Index(out, "%{"); i >= 0 {
			return fmt.Errorf("%s: unknown placeholder at %.40q", path, out[i:])
		}
		files[path] = []byte(out)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alerts: default rules: %w", err)
	}
	return files, nil
}

// DefaultRuleNames returns the alert names of gluebox's default rules.
func DefaultRuleNames() (map[string]bool, error) {
	files, err := DefaultRuleFiles(0)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for name, data := range files {
		var f ruleFile
		if err := yaml.Unmarshal(data, &f); err != nil {
			return nil, fmt.Errorf("alerts: default rules %s: %w", name, err)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				names[r.Alert] = true
			}
		}
	}
	return names, nil
}

// parseDuration parses Prometheus' duration syntax ("90s", "1h30m", "2d").
func parseDuration(s string) (time.Duration, error) {
	if !durationRE.MatchString(s) {
		return 0, fmt.Errorf("%q is not a duration such as 30s, 5m, 1h30m or 2d", s)
	}
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute,
		"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}
	var d time.Duration
	for _, m := range durationPartRE.FindAllStringSubmatch(s, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > int64(365*24*time.Hour/units[m[2]]) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d += time.Duration(n) * units[m[2]]
	}
	if d > 365*24*time.Hour {
		return 0, fmt.Errorf("%q is longer than a year", s)
	}
	return d, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
