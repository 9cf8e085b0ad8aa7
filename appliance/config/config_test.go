package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func newFlags(t *testing.T, args ...string) (*Server, *pflag.FlagSet) {
	t.Helper()
	var s Server
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	s.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &s, fs
}

func TestFileAppliesUnlessFlagGiven(t *testing.T) {
	s, fs := newFlags(t, "--domain", "cli.example")
	err := Apply(fs, "c.yaml", []byte("domain: file.example\npoll-interval: 30s\nkubelet-arg:\n  - v=2\n  - max-pods=50\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Domain != "cli.example" {
		t.Errorf("flag must win over file, got %q", s.Domain)
	}
	if s.PollInterval != 30*time.Second {
		t.Errorf("poll-interval = %s", s.PollInterval)
	}
	if strings.Join(s.KubeletArgs, ",") != "v=2,max-pods=50" {
		t.Errorf("kubelet-arg = %v", s.KubeletArgs)
	}
	if err := s.Validate(); err != nil {
		t.Errorf("defaults must validate: %v", err)
	}
}

func TestBadFilesNameFileLineAndKey(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "domain: a\nregistry-adr: x\n", `c.yaml:2: unknown key "registry-adr"`},
		{"bad value", "api-port: many\n", `c.yaml:1: key "api-port"`},
		{"list for scalar", "domain: [a, b]\n", `c.yaml:1: key "domain" takes a single value`},
		{"not a mapping", "- a\n", "c.yaml:1: the config file must be a mapping"},
		{"broken yaml", "domain: [\n", "c.yaml: invalid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fs := newFlags(t)
			err := Apply(fs, "c.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--node-ip", "::1"}, "--node-ip"},
		{[]string{"--cluster-cidr", "10.42.0.0/28"}, "too small"},
		{[]string{"--registry-addr", "5000"}, "--registry-addr"},
		{[]string{"--poll-interval", "10ms"}, "--poll-interval"},
		{[]string{"--observability-cpu-limit", "0.05"}, "--observability-cpu-limit 0.05 is not a number of cores"},
		{[]string{"--observability-cpu-limit", "-1"}, "--observability-cpu-limit"},
	} {
		s, _ := newFlags(t, tc.args...)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want error containing %q, got %v", tc.args, tc.want, err)
		}
	}
}

func TestSizesTakeUnitsAndPlainBytes(t *testing.T) {
	s, fs := newFlags(t, "--metrics-memory-limit", "1Gi", "--logs-disk-budget", "2G")
	if err := Apply(fs, "c.yaml", []byte("metrics-disk-budget: 1073741824\nalerting-memory-limit: 128Mi\nlog-collector-memory-limit: 0\n")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct{ got, want int64 }{
		"metrics-memory-limit":       {s.MetricsMemoryLimit, 1 << 30},
		"logs-disk-budget":           {s.LogsDiskBudget, 2e9},
		"metrics-disk-budget":        {s.MetricsDiskBudget, 1 << 30},
		"alerting-memory-limit":      {s.AlertingMemoryLimit, 128 << 20},
		"log-collector-memory-limit": {s.LogCollectorMemoryLimit, 0},
		"logs-memory-limit":          {s.LogsMemoryLimit, DefaultStoreMemoryLimit}, // untouched default
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", name, c.got, c.want)
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("valid sizes rejected: %v", err)
	}
	if got := fs.Lookup("logs-memory-limit").DefValue; got != "512Mi" {
		t.Errorf("--help shows the default as %q, want 512Mi", got)
	}
}

func TestBadSizesAreNamed(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"metrics-memory-limit: lots\n", `"lots" is not a size: use bytes or a unit such as 512Mi`},
		{"logs-disk-budget: -5Gi\n", `"-5Gi" is not a size in whole bytes`},
		{"alerting-memory-limit: 1.5\n", `"1.5" is not a size in whole bytes`},
	} {
		_, fs := newFlags(t)
		if err := Apply(fs, "c.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "c.yaml:1: key ") {
			t.Errorf("%q: want error containing %q, got %v", tc.yaml, tc.want, err)
		}
	}
	s, _ := newFlags(t, "--logs-memory-limit", "10Mi")
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--logs-memory-limit 10485760 is too small: give at least 64Mi, or 0 for no limit") {
		t.Errorf("a 10Mi limit: got %v", err)
	}
}

func TestObservabilityCPULimitDefaultsToHalfTheHost(t *testing.T) {
	for cpus, want := range map[int]float64{1: 1, 2: 1, 3: 1.5, 8: 4} {
		if got := DefaultObservabilityCPULimit(cpus); got != want {
			t.Errorf("%d cores: %v, want %v", cpus, got, want)
		}
	}
	s, _ := newFlags(t, "--observability-cpu-limit", "0")
	if err := s.Validate(); err != nil {
		t.Errorf("0 (no limit) rejected: %v", err)
	}
}

// The packaged example config (packaging/config.yaml) must keep naming real flags with valid
// values, its commented-out examples included.
func TestPackagedConfigExampleApplies(t *testing.T) {
	data, err := os.ReadFile("../../packaging/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		// "# key: value" and "#   - item" are examples; other comments are prose.
		if ex, ok := strings.CutPrefix(line, "# "); ok && (regexp.MustCompile(`^[a-z-]+:`).MatchString(ex) || strings.HasPrefix(ex, "  - ")) {
			line = ex
		}
		lines = append(lines, line)
	}
	s, fs := newFlags(t)
	if err := Apply(fs, "packaging/config.yaml", []byte(strings.Join(lines, "\n"))); err != nil {
		t.Fatalf("the example config does not apply with its examples enabled: %v", err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the example config's values do not validate: %v", err)
	}
	if s.MetricsDiskBudget != 20<<30 || len(s.KubeletArgs) != 1 {
		t.Errorf("examples not applied: metrics-disk-budget %d, kubelet-arg %v", s.MetricsDiskBudget, s.KubeletArgs)
	}
}
