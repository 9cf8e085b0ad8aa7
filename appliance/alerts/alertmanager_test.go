package alerts

import (
	"strings"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/golden"
)

func TestRenderAlertmanagerConfig(t *testing.T) {
	no := false
	for _, tc := range []struct {
		name string
		n    Notify
	}{
		{"minimal", Notify{}},
		{"receivers", Notify{
			GroupWait: 10 * time.Second, GroupInterval: 2 * time.Minute, RepeatInterval: 12 * time.Hour,
			Receivers: []Receiver{
				{Name: "ops", Webhook: &Webhook{URL: "https://hooks.example.com/gluebox?token=abc", MaxAlerts: 20},
					Slack: &Slack{APIURL: "https://hooks.slack.com/services/T000/B000/XXXX", Channel: "#alerts"}},
				{Name: "dev-mail", Email: &Email{To: "dev@example.com, lead@example.com", From: "gluebox <gluebox@example.com>",
					Smarthost: "smtp.example.com:587", Username: "gluebox", Password: "s3cret: with 'quotes'", RequireTLS: &no}},
			},
			Heartbeat: Heartbeat{URL: "https://hc.example.com/ping/1234"},
		}},
		{"default receiver", Notify{
			Receivers:       []Receiver{{Name: "ops", Webhook: &Webhook{URL: "http://10.0.0.1/hook"}}, {Name: "audit", Webhook: &Webhook{URL: "http://10.0.0.2/hook"}}},
			DefaultReceiver: "ops",
			Heartbeat:       Heartbeat{URL: "http://10.0.0.3/beat", Interval: 5 * time.Minute},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderAlertmanagerConfig(tc.n)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, "alertmanager-"+strings.ReplaceAll(tc.name, " ", "-")+".yml", got)
		})
	}
}

func TestNotifyValidate(t *testing.T) {
	hook := &Webhook{URL: "http://127.0.0.1/hook"}
	for _, tc := range []struct {
		name string
		n    Notify
		want string
	}{
		{"bad name", Notify{Receivers: []Receiver{{Name: "Ops Team", Webhook: hook}}}, `receivers[0]: name "Ops Team" is not a DNS label`},
		{"reserved", Notify{Receivers: []Receiver{{Name: "default", Webhook: hook}}}, `name "default" is reserved`},
		{"twice", Notify{Receivers: []Receiver{{Name: "ops", Webhook: hook}, {Name: "ops", Webhook: hook}}}, `receivers[1]: name "ops" is used twice`},
		{"empty", Notify{Receivers: []Receiver{{Name: "ops"}}}, `receiver "ops": set a webhook, slack or email destination`},
		{"webhook url", Notify{Receivers: []Receiver{{Name: "ops", Webhook: &Webhook{URL: "hooks.example.com"}}}}, `receiver "ops": webhook URL: "hooks.example.com" is not an http(s) URL`},
		{"template url", Notify{Receivers: []Receiver{{Name: "ops", Webhook: &Webhook{URL: "http://x/{{ .Status }}"}}}}, `must not contain templates`},
		{"slack url", Notify{Receivers: []Receiver{{Name: "chat", Slack: &Slack{APIURL: ""}}}}, `receiver "chat": slack API URL`},
		{"email to", Notify{Receivers: []Receiver{{Name: "mail", Email: &Email{To: "nobody", From: "a@b.c", Smarthost: "smtp:25"}}}}, `receiver "mail": email to "nobody" is not an address`},
		{"email host", Notify{Receivers: []Receiver{{Name: "mail", Email: &Email{To: "x@y.z", From: "a@b.c", Smarthost: "smtp"}}}}, `email smarthost "smtp" is not host:port`},
		{"email auth", Notify{Receivers: []Receiver{{Name: "mail", Email: &Email{To: "x@y.z", From: "a@b.c", Smarthost: "smtp:587", Password: "p"}}}}, `password given without a username`},
		{"default receiver", Notify{DefaultReceiver: "ops"}, `default receiver "ops" is not one of the receivers`},
		{"heartbeat", Notify{Heartbeat: Heartbeat{URL: "http://x", Interval: time.Millisecond}}, `heartbeat interval 1ms is shorter than 1s`},
		{"negative", Notify{GroupWait: -time.Second}, `must not be negative`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.n.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want it to contain %q", err, tc.want)
			}
			if _, rerr := RenderAlertmanagerConfig(tc.n); rerr == nil {
				t.Errorf("RenderAlertmanagerConfig accepted it")
			}
		})
	}
	ok := Notify{Receivers: []Receiver{{Name: "ops", Webhook: hook}, {Name: "mail", Email: &Email{To: "x@y.z", From: "a@b.c", Smarthost: "[::1]:25"}}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid notify: %v", err)
	}
	if got := strings.Join(ok.ReceiverNames(), ","); got != "ops,mail" {
		t.Errorf("ReceiverNames = %s", got)
	}
}

func TestAlertmanagerArgs(t *testing.T) {
	cfg := AlertmanagerConfig{Binary: "/bin/alertmanager", Dir: "/data/alerts/alertmanager",
		ExternalURL: "https://console.example.com/alertmanager", ExtraFlags: map[string]string{"--log.level": "debug"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.defaults()
	got := strings.Join(AlertmanagerArgs(cfg), "\n")
	want := strings.Join([]string{
		"--cluster.listen-address=",
		"--config.file=/data/alerts/alertmanager/alertmanager.yml",
		"--data.retention=120h0m0s",
		"--log.format=json",
		"--log.level=debug",
		"--storage.path=/data/alerts/alertmanager/data",
		"--web.external-url=https://console.example.com/alertmanager",
		"--web.listen-address=127.0.0.1:9093",
	}, "\n")
	if got != want {
		t.Errorf("args:\n%s\nwant:\n%s", got, want)
	}
	for _, tc := range []struct {
		cfg  AlertmanagerConfig
		want string
	}{
		{AlertmanagerConfig{Dir: "/d"}, "Binary is required"},
		{AlertmanagerConfig{Binary: "b", Dir: "d"}, "must be an absolute path"},
		{AlertmanagerConfig{Binary: "b", Dir: "/d", Port: 70000}, "not a TCP port"},
		{AlertmanagerConfig{Binary: "b", Dir: "/d", Notify: Notify{DefaultReceiver: "x"}}, "default receiver"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseMatcher(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Matcher
		str  string
	}{
		{"alertname=PodCrashLooping", Matcher{Name: "alertname", Value: "PodCrashLooping", IsEqual: true}, `alertname="PodCrashLooping"`},
		{`app != "shop"`, Matcher{Name: "app", Value: "shop"}, `app!="shop"`},
		{`env=~pr-.*`, Matcher{Name: "env", Value: "pr-.*", IsRegex: true, IsEqual: true}, `env=~"pr-.*"`},
		{`env!~"prod|stage"`, Matcher{Name: "env", Value: "prod|stage", IsRegex: true}, `env!~"prod|stage"`},
		{`summary="a \"quoted\" text"`, Matcher{Name: "summary", Value: `a "quoted" text`, IsEqual: true}, `summary="a \"quoted\" text"`},
		{`app=`, Matcher{Name: "app", Value: "", IsEqual: true}, `app=""`},
	} {
		got, err := ParseMatcher(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseMatcher(%q) = %+v (%s), %v; want %+v (%s)", tc.in, got, got.String(), err, tc.want, tc.str)
		}
	}
	for _, in := range []string{"", "app", "=x", "1app=x", `env=~"(unclosed"`, `app="unterminated`} {
		if m, err := ParseMatcher(in); err == nil {
			t.Errorf("ParseMatcher(%q) = %+v, want an error", in, m)
		}
	}
}
