package config

import (
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
	} {
		s, _ := newFlags(t, tc.args...)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want error containing %q, got %v", tc.args, tc.want, err)
		}
	}
}
