package alerts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gluebox/gluebox/appliance/internal/golden"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// TestDefaultRules checks what every default rule must have, and records the metric names
// they read in testdata/default-rule-metrics.txt: the contract with the exporters.
func TestDefaultRules(t *testing.T) {
	files, err := DefaultRuleFiles(5 << 30)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"BackupTooOld", "BuildFailingRepeatedly", "CertificateExpiringSoon", "DeploymentNotAvailable",
		"GlueboxHeartbeat", "MetricsRetentionShortened", "NoVerifiedBackup", "NodeDiskAlmostFull", "NodeDiskFilling", "NodeDiskPressure", "NodeMemoryPressure", "ObservabilityDiskBudgetNearlyFull",
		"PodCrashLooping", "PodNotReady", "RegistryDiskHigh", "SyncFailing"}
	var names []string
	metricRE := regexp.MustCompile(`\b(kube_[a-z_]+|gluebox_[a-z_]+)\b`)
	metricSet := map[string]bool{}
	for file, data := range files {
		var f ruleFile
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if strings.Contains(string(data), "%{") {
			t.Errorf("%s: placeholder left", file)
		}
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				names = append(names, r.Alert)
				switch r.Labels["severity"] {
				case SeverityCritical, SeverityWarning, SeverityInfo:
				case "none":
					if r.Alert != HeartbeatAlert {
						t.Errorf("%s: severity none is for the heartbeat only", r.Alert)
					}
				default:
					t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
				}
				if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s: needs summary and description annotations", r.Alert)
				}
				if strings.Contains(r.Expr, "app") && !strings.Contains(r.Annotations["summary"], "$labels.app") {
					t.Errorf("%s: groups by app but its summary does not name it", r.Alert)
				}
				for _, m := range metricRE.FindAllString(r.Expr, -1) {
					metricSet[m] = true
				}
			}
		}
	}
	sort.Strings(names)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("default rules\n %v, want\n %v", names, want)
	}
	if !strings.Contains(string(files["gluebox.yaml"]), "gluebox_registry_disk_bytes > 5368709120") {
		t.Errorf("registry limit not substituted:\n%s", files["gluebox.yaml"])
	}
	var metrics []string
	for m := range metricSet {
		metrics = append(metrics, m)
	}
	sort.Strings(metrics)
	golden.Check(t, "default-rule-metrics.txt", []byte(strings.Join(metrics, "\n")+"\n"))

	if _, err := DefaultRuleFiles(-1); err == nil {
		t.Error("negative registry limit accepted")
	}
}

func TestValidateUserRules(t *testing.T) {
	ok := UserRule{Name: "Good", Expr: "up == 0"}
	for _, tc := range []struct {
		name string
		rule UserRule
		want string // "" means valid
	}{
		{"metric rule", ok, ""},
		{"log rule", UserRule{Name: "Panics", Logs: `"panic"`, For: "1h30m", Severity: "critical", Receiver: "ops",
			Labels: map[string]string{"app": "shop", "env": "prod"}}, ""},
		{"no query", UserRule{Name: "Empty"}, `rule "Empty": set expr (a MetricsQL expression) or logs`},
		{"both queries", UserRule{Name: "Both", Expr: "up", Logs: "x"}, `rule "Both": set only one of expr`},
		{"bad name", UserRule{Name: "9lives", Expr: "up"}, `rule "9lives": name "9lives": use a letter`},
		{"bad for", UserRule{Name: "Slow", Expr: "up", For: "5 minutes"}, `rule "Slow": for: "5 minutes" is not a duration`},
		{"bad severity", UserRule{Name: "Loud", Expr: "up", Severity: "page"}, `rule "Loud": severity "page": use critical, warning or info`},
		{"unknown receiver", UserRule{Name: "Lost", Expr: "up", Receiver: "pager"}, `rule "Lost": receiver "pager" is not configured (have: ops)`},
		{"reserved label", UserRule{Name: "Sneaky", Expr: "up", Labels: map[string]string{"severity": "critical"}}, `labels: "severity" is set from the severity field`},
		{"bad label name", UserRule{Name: "Odd", Expr: "up", Labels: map[string]string{"my-label": "x"}}, `labels: "my-label" is not a label name`},
		{"env placeholder", UserRule{Name: "Leak", Expr: "up", Summary: "%{HOME}"}, `summary must not contain %{`},
		{"template in label", UserRule{Name: "Tpl", Expr: "up", Labels: map[string]string{"app": "{{ $value }}"}}, `labels.app must be plain text`},
		{"default name", UserRule{Name: "PodCrashLooping", Expr: "up"}, `name "PodCrashLooping" is taken by one of gluebox's default rules`},
		{"duplicate", UserRule{Name: "Good", Expr: "up"}, `rule "Good": name "Good" is used by another rule`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules := []UserRule{tc.rule}
			if tc.name == "duplicate" {
				rules = []UserRule{ok, tc.rule}
			}
			valid, err := ValidateUserRules(rules, []string{"ops"})
			if tc.want == "" {
				if err != nil || len(valid) != 1 {
					t.Fatalf("got %v, %v; want it valid", valid, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			var re *RuleError
			if !errors.As(err, &re) || re.Rule != tc.rule.Name {
				t.Errorf("error %v is not a *RuleError for %q", err, tc.rule.Name)
			}
			if tc.name == "duplicate" && (len(valid) != 1 || valid[0].Name != "Good") {
				t.Errorf("valid = %v, want the first Good", valid)
			}
		})
	}
}

func TestParseUserRules(t *testing.T) {
	data := []byte(`apps:
  - name: shop
    repo: https://example.com/shop.git
alerts:
  - name: ShopDown
    expr: up{job="shop"} == 0
    for: 2m
    receiver: ops
  - name: Typo
    exprr: up == 0
  - name: Wrong
    labels: [a, b]
  - just a string
  - name: Panics
    logs: '"panic"'
`)
	rules, err := ParseUserRules(data)
	if len(rules) != 2 || rules[0].Name != "ShopDown" || rules[0].Line != 5 || rules[0].Index != 0 || rules[0].For != "2m" ||
		rules[1].Name != "Panics" || rules[1].Index != 4 || rules[1].Line != 14 {
		t.Errorf("rules = %+v", rules)
	}
	for _, want := range []string{
		`platform.yaml:9: alerts[1] rule "Typo": line 10: unknown key "exprr"`,
		`platform.yaml:11: alerts[2] rule "Wrong": line 12: cannot unmarshal`,
		`platform.yaml:13: alerts[3] must be a mapping`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q", err, want)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"apps: []\n", ""},
		{"alerts:\n", ""},
		{"alerts: {name: x}\n", "platform.yaml:1: alerts must be a list"},
		{"alerts: [\n", "platform.yaml: "},
	} {
		rules, err := ParseUserRules([]byte(tc.in))
		if tc.want == "" && (err != nil || len(rules) != 0) || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ParseUserRules(%q) = %v, %v; want error %q", tc.in, rules, err, tc.want)
		}
	}
}

func TestUserRuleFile(t *testing.T) {
	got, err := UserRuleFile([]UserRule{
		{Name: "ShopErrors", Expr: "sum by (app, env) (rate(http_requests_total{app=\"shop\",code=~\"5..\"}[5m]))\n  > 1\n", For: "5m",
			Severity: "critical", Summary: "{{ $labels.app }}/{{ $labels.env }} answers 5xx", Description: "More than one 5xx a second.", Receiver: "ops"},
		{Name: "ShopPanics", Logs: `app:=shop "panic"`, Labels: map[string]string{"app": "shop", "env": "prod"}},
		{Name: "SlowRequests", Logs: `app:=shop | stats quantile(0.99, duration) as p99 | filter p99:>2`},
	})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "user-rules.yaml", got)
	empty, err := UserRuleFile(nil)
	if err != nil || string(empty) != "groups: []\n" {
		t.Errorf("no rules: %q, %v", empty, err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"30s": "30s", "1h30m": "1h30m0s", "2d": "48h0m0s", "1w": "168h0m0s", "1500ms": "1.5s"} {
		if d, err := parseDuration(in); err != nil || d.String() != want {
			t.Errorf("parseDuration(%q) = %s, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "5", "5 m", "-5m", "1.5h", "2y", "9999999999999d", "400d"} {
		if _, err := parseDuration(in); err == nil {
			t.Errorf("parseDuration(%q) accepted", in)
		}
	}
}

// TestCheck runs the real `vmalert -dryRun`: the default rules pass; bad MetricsQL, bad
// LogsQL and broken YAML are reported naming the rule, group or file.
func TestCheck(t *testing.T) {
	bin := testbin.Path(t, "vmalert", "GLUEBOX_TEST_VMALERT")
	dir := t.TempDir()
	files, err := DefaultRuleFiles(0)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	ctx := context.Background()
	if found, err := Check(ctx, bin, paths); err != nil || len(found) != 0 {
		t.Fatalf("default rules: %v, %v", found, err)
	}

	user, err := UserRuleFile([]UserRule{
		{Name: "Fine", Expr: "up == 0"},
		{Name: "Typo", Expr: "sum(rate(up[5m])"},
		{Name: "BadLogs", Logs: "error | stats count( as n"},
		{Name: "BadTemplate", Expr: "up", Summary: "{{ noSuchFunction }}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	userPath := filepath.Join(dir, "user.yaml")
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(userPath, user, 0o644)
	os.WriteFile(broken, []byte("groups:\n  - name: x\n    rules: [\n"), 0o644)
	found, err := Check(ctx, bin, []string{userPath, broken})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range found {
		key := f.Rule
		if key == "" {
			key = filepath.Base(f.File)
		}
		got[key] = f.Error()
	}
	for key, want := range map[string]string{
		"Typo":        `user.yaml: rule "Typo": bad MetricsQL expr: "sum(rate(up[5m])"`,
		"BadLogs":     `user.yaml: rule "BadLogs": bad LogsQL expr`,
		"BadTemplate": `user.yaml: rule "BadTemplate": (key: "summary", value: "{{ noSuchFunction }}"): error parsing template: template: :1: function "noSuchFunction" not defined`,
		"broken.yaml": `broken.yaml: yaml: line 3`,
	} {
		if !strings.Contains(got[key], want) {
			t.Errorf("%s: error %q, want it to contain %q", key, got[key], want)
		}
	}
	if len(found) != 4 {
		t.Errorf("found %d problems, want 4: %v", len(found), found)
	}

	if _, err := Check(ctx, filepath.Join(dir, "no-such-vmalert"), paths); err == nil {
		t.Error("Check with a missing binary returned no error")
	}
}

func TestVMAlertArgs(t *testing.T) {
	cfg := VMAlertConfig{Binary: "/bin/vmalert", Dir: "/data/alerts/vmalert", MetricsURL: "http://127.0.0.1:8428",
		AlertmanagerURL: "http://127.0.0.1:9093", ExternalURL: "https://console.example.com/alerts",
		ExtraFlags: map[string]string{"-rule.resendDelay": "1m", "evaluationInterval": "10s"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.defaults()
	got := strings.Join(VMAlertArgs(cfg, "http://127.0.0.1:4000"), "\n")
	want := strings.Join([]string{
		"-datasource.url=http://127.0.0.1:4000",
		"-evaluationInterval=10s",
		"-external.url=https://console.example.com/alerts",
		"-httpListenAddr=127.0.0.1:8880",
		"-loggerFormat=json",
		"-notifier.url=http://127.0.0.1:9093",
		"-remoteRead.url=http://127.0.0.1:8428",
		"-remoteWrite.url=http://127.0.0.1:8428",
		"-rule=/data/alerts/vmalert/rules/*.yaml",
		"-rule.evalDelay=5s",
		"-rule.resendDelay=1m",
		"-rule.validateExpressions=true",
		"-rule.validateTemplates=true",
	}, "\n")
	if got != want {
		t.Errorf("args:\n%s\nwant:\n%s", got, want)
	}
	for _, tc := range []struct {
		cfg  VMAlertConfig
		want string
	}{
		{VMAlertConfig{Dir: "/d", MetricsURL: "http://a", AlertmanagerURL: "http://b"}, "Binary is required"},
		{VMAlertConfig{Binary: "b", Dir: "rel", MetricsURL: "http://a", AlertmanagerURL: "http://b"}, "must be an absolute path"},
		{VMAlertConfig{Binary: "b", Dir: "/d", AlertmanagerURL: "http://b"}, "MetricsURL"},
		{VMAlertConfig{Binary: "b", Dir: "/d", MetricsURL: "http://a", AlertmanagerURL: "ftp://b"}, "AlertmanagerURL"},
		{VMAlertConfig{Binary: "b", Dir: "/d", MetricsURL: "http://a", AlertmanagerURL: "http://b", EvaluationInterval: 1}, "shorter than 1s"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestSetUserRulesOffline: without a running vmalert, SetUserRules checks with the binary,
// writes only the good rules, drops log rules when no log store is configured, and removes
// the file when nothing is left.
func TestSetUserRulesOffline(t *testing.T) {
	dir := t.TempDir()
	// A default rule file an older gluebox wrote goes away; the user's file stays.
	os.MkdirAll(filepath.Join(dir, "rules"), 0o755)
	os.WriteFile(filepath.Join(dir, "rules", "default-retired.yaml"), []byte("groups: []\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "rules", UserRulesFile), []byte("groups: []\n"), 0o644)
	v, err := NewVMAlert(VMAlertConfig{Binary: testbin.Path(t, "vmalert", "GLUEBOX_TEST_VMALERT"), Dir: dir,
		MetricsURL: "http://127.0.0.1:1", AlertmanagerURL: "http://127.0.0.1:2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "rules", "*.yaml"))
	if len(entries) != 5 || contains(entries, filepath.Join(dir, "rules", "default-retired.yaml")) {
		t.Errorf("rules dir holds %v, want the 4 default files and the user's", entries)
	}
	ctx := context.Background()
	dropped, err := v.SetUserRules(ctx, []UserRule{
		{Name: "Fine", Expr: "up == 0"},
		{Name: "Typo", Expr: "up ==", Line: 7, Index: 1},
		{Name: "Logs", Logs: "panic"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, d := range dropped {
		msgs = append(msgs, d.Error())
	}
	if len(dropped) != 2 || !strings.Contains(msgs[0], `rule "Logs": log rules need the log store`) ||
		!strings.HasPrefix(msgs[1], `platform.yaml:7: alerts[1] rule "Typo": vmalert: bad MetricsQL expr`) {
		t.Errorf("dropped:\n%s", strings.Join(msgs, "\n"))
	}
	data, err := os.ReadFile(filepath.Join(dir, "rules", UserRulesFile))
	if err != nil || !strings.Contains(string(data), "alert: Fine") || strings.Contains(string(data), "Typo") {
		t.Errorf("user rules file: %s, %v", data, err)
	}
	if r := v.UserRules(); len(r) != 1 || r[0].Name != "Fine" {
		t.Errorf("UserRules = %v", r)
	}
	if _, err := v.SetUserRules(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rules", UserRulesFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("user rules file still there: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "check-*")); len(matches) != 0 {
		t.Errorf("check dirs left: %v", matches)
	}
}
