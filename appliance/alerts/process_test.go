package alerts

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// runner is a component with a child process, as the helpers below start them.
type runner interface {
	Run(ctx context.Context) error
	WaitReady(ctx context.Context) error
	State() supervise.ChildState
}

// start runs r until the test ends (t.Cleanup stops it, also when the test fails), waits until
// it is ready, and at cleanup checks that Run returned nil and the process is gone.
func start(t *testing.T, r runner, logFile string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		pid := r.State().PID
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		case <-time.After(40 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		if pid != 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			t.Errorf("pid %d still runs after stop", pid)
		}
	})
	readyCtx, cancelReady := context.WithTimeout(ctx, 20*time.Second)
	defer cancelReady()
	if err := r.WaitReady(readyCtx); err != nil {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("not ready: %v; state %+v; log:\n%s", err, r.State(), lastLines(string(b), 20))
	}
}

func newTestAlertmanager(t *testing.T, n Notify) *Alertmanager {
	t.Helper()
	dir := t.TempDir()
	cfg := AlertmanagerConfig{
		Binary:  testbin.Path(t, "alertmanager", "GLUEBOX_TEST_ALERTMANAGER"),
		Dir:     dir,
		LogFile: filepath.Join(dir, "alertmanager.log"),
		Port:    testbin.FreePort(t),
		Notify:  n,
	}
	a, err := NewAlertmanager(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start(t, a, cfg.LogFile)
	return a
}

// hook is a webhook receiver that records Alertmanager's notifications.
type hook struct {
	*httptest.Server
	mu   sync.Mutex
	msgs []notification
	hits []time.Time
}

// notification is Alertmanager's webhook payload (the parts the tests read).
type notification struct {
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
	GroupLabels map[string]string `json:"groupLabels"`
}

func newHook(t *testing.T) *hook {
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	var n notification
	if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.msgs = append(h.msgs, n)
	h.hits = append(h.hits, time.Now())
	h.mu.Unlock()
}

// find returns the first notification with the given status about alertname.
func (h *hook) find(alertname, status string) (notification, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.msgs {
		if n.Status == status && len(n.Alerts) > 0 && n.Alerts[0].Labels["alertname"] == alertname {
			return n, true
		}
	}
	return notification{}, false
}

func (h *hook) times() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.hits...)
}

// eventually polls f every 200ms until it returns nil, failing the test after within.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitNotification(t *testing.T, h *hook, alertname, status string, within time.Duration) notification {
	t.Helper()
	var got notification
	eventually(t, within, fmt.Sprintf("%s notification for %s", status, alertname), func() error {
		var ok bool
		if got, ok = h.find(alertname, status); !ok {
			return errors.New("not received")
		}
		return nil
	})
	return got
}

// TestAlertingEndToEnd runs VictoriaMetrics (scraping a stand-in for gluebox's /metrics),
// VictoriaLogs, Alertmanager and vmalert as real processes: a user metric rule, a user log
// rule and a default rule fire, reach a webhook receiver and resolve; the heartbeat arrives
// every interval; silences are created, listed and expired; a bad user rule is dropped with
// an error naming it while the others keep running.
func TestAlertingEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs four programs")
	}
	var broken atomic.Int64
	broken.Store(1)
	certExpiry := time.Now().Add(time.Hour).Unix()
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "gluebox_test_broken{app=\"shop\",env=\"prod\"} %d\n", broken.Load())
		fmt.Fprintf(w, "gluebox_cert_expiry_timestamp_seconds{name=\"ingress\"} %d\n", certExpiry)
	}))
	defer exporter.Close()

	vmDir := t.TempDir()
	vm, err := metrics.New(metrics.Config{
		Binary: testbin.Path(t, "victoria-metrics", "GLUEBOX_TEST_VICTORIAMETRICS"), Dir: vmDir,
		LogFile: filepath.Join(vmDir, "vm.log"), Port: testbin.FreePort(t), ScrapeInterval: time.Second,
		Targets: metrics.Targets{Gluebox: exporter.URL + "/metrics"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, vm, filepath.Join(vmDir, "vm.log"))
	vlDir := t.TempDir()
	vl, err := logs.New(logs.Config{
		Binary: testbin.Path(t, "victoria-logs", "GLUEBOX_TEST_VICTORIALOGS"), Dir: vlDir,
		LogFile: filepath.Join(vlDir, "vl.log"), Port: testbin.FreePort(t),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, vl, filepath.Join(vlDir, "vl.log"))

	team, beat := newHook(t), newHook(t)
	notify := Notify{
		GroupWait: time.Second, GroupInterval: time.Second, RepeatInterval: time.Hour,
		Receivers: []Receiver{{Name: "team", Webhook: &Webhook{URL: team.URL}}},
		Heartbeat: Heartbeat{URL: beat.URL, Interval: 2 * time.Second},
	}
	am := newTestAlertmanager(t, notify)

	vaDir := t.TempDir()
	vaCfg := VMAlertConfig{
		Binary: testbin.Path(t, "vmalert", "GLUEBOX_TEST_VMALERT"), Dir: vaDir,
		LogFile: filepath.Join(vaDir, "vmalert.log"), Port: testbin.FreePort(t),
		MetricsURL: vm.URL(), LogsURL: vl.URL(), AlertmanagerURL: am.URL(),
		EvaluationInterval: time.Second,
	}
	va, err := NewVMAlert(vaCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rules := []UserRule{
		{Name: "ShopBroken", Expr: `gluebox_test_broken == 1`, Severity: "critical", Receiver: "team",
			Summary: `{{ $labels.app }}/{{ $labels.env }} is broken`},
		{Name: "ShopPanics", Logs: `app:=shop "gluebox-test-panic"`, Labels: map[string]string{"app": "shop", "env": "prod"}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Before vmalert runs, SetUserRules only writes the file it starts with.
	if dropped, err := va.SetUserRules(ctx, rules); err != nil || len(dropped) > 0 {
		t.Fatalf("SetUserRules = %v, %v", dropped, err)
	}
	start(t, va, vaCfg.LogFile)

	// Log lines keep arriving until the log rule has fired.
	stopLines := make(chan struct{})
	go func() {
		lc := vl.Client()
		for {
			_ = lc.Ingest(ctx, []logs.Line{{Msg: "gluebox-test-panic: nil map", Fields: map[string]string{"app": "shop"}}}, "app")
			select {
			case <-stopLines:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()

	n := waitNotification(t, team, "ShopBroken", "firing", 40*time.Second)
	if n.Receiver != "team" || n.Alerts[0].Labels["severity"] != "critical" || n.Alerts[0].Annotations["summary"] != "shop/prod is broken" {
		t.Errorf("firing notification %+v", n)
	}
	if n.GroupLabels["alertname"] != "ShopBroken" || n.GroupLabels["app"] != "shop" || n.GroupLabels["env"] != "prod" {
		t.Errorf("group labels %v, want alertname, app and env", n.GroupLabels)
	}
	n = waitNotification(t, team, "CertificateExpiringSoon", "firing", 20*time.Second)
	if s := n.Alerts[0].Annotations["summary"]; !strings.HasPrefix(s, "certificate ingress expires in ") || n.Receiver != "default" {
		t.Errorf("default rule notification: receiver %q, summary %q", n.Receiver, s)
	}
	waitNotification(t, team, "ShopPanics", "firing", 30*time.Second)
	close(stopLines)

	// The heartbeat goes to its own receiver only, every interval (not every second one).
	eventually(t, 15*time.Second, "three heartbeats", func() error {
		if n := len(beat.times()); n < 3 {
			return fmt.Errorf("%d heartbeats", n)
		}
		return nil
	})
	hb := beat.times()
	t.Logf("heartbeats at %v", hb)
	for i := 1; i < len(hb); i++ {
		if gap := hb[i].Sub(hb[i-1]); gap > 3500*time.Millisecond {
			t.Errorf("heartbeat %d came %s after the previous one, want about 2s", i, gap)
		}
	}
	if _, ok := team.find(HeartbeatAlert, "firing"); ok {
		t.Errorf("the heartbeat reached the team receiver")
	}
	if n, ok := beat.find(HeartbeatAlert, "firing"); !ok || n.Receiver != HeartbeatReceiverName {
		t.Errorf("heartbeat notification %+v", n)
	}

	// The client sees the alerts and silences them.
	c := am.Client()
	alerts, err := c.Alerts(ctx, Matcher{Name: "alertname", Value: "ShopBroken", IsEqual: true})
	if err != nil || len(alerts) != 1 || alerts[0].Labels["app"] != "shop" || alerts[0].Status.State != "active" {
		t.Fatalf("Alerts = %+v, %v", alerts, err)
	}
	id, err := c.Silence(ctx, NewSilence{Matchers: []Matcher{{Name: "alertname", Value: "ShopBroken", IsEqual: true}},
		Duration: time.Hour, CreatedBy: "test", Comment: "maintenance"})
	if err != nil || id == "" {
		t.Fatalf("Silence = %q, %v", id, err)
	}
	sils, err := c.Silences(ctx)
	if err != nil || len(sils) != 1 || sils[0].ID != id || sils[0].Status.State != "active" || sils[0].Comment != "maintenance" ||
		sils[0].Matchers[0] != (Matcher{Name: "alertname", Value: "ShopBroken", IsEqual: true}) {
		t.Fatalf("Silences = %+v, %v", sils, err)
	}
	eventually(t, 10*time.Second, "alert silenced", func() error {
		a, err := c.Alerts(ctx, Matcher{Name: "alertname", Value: "ShopBroken", IsEqual: true})
		if err != nil {
			return err
		}
		if len(a) != 1 || a[0].Status.State != "suppressed" || len(a[0].Status.SilencedBy) != 1 || a[0].Status.SilencedBy[0] != id {
			return fmt.Errorf("alerts %+v", a)
		}
		return nil
	})
	if err := c.ExpireSilence(ctx, id); err != nil {
		t.Fatal(err)
	}
	sils, err = c.Silences(ctx)
	if err != nil || len(sils) != 1 || sils[0].Status.State != "expired" {
		t.Fatalf("after expiry: Silences = %+v, %v", sils, err)
	}

	// A bad rule is dropped with an error naming it and its line; the good ones keep running.
	platform := []byte("apps: []\nalerts:\n  - name: ShopBroken\n    expr: gluebox_test_broken == 1\n    receiver: team\n" +
		"  - name: Typo\n    expr: sum(rate(gluebox_test_broken[5m]\n  - name: BadLogs\n    logs: 'error | stats count( as n'\n")
	parsed, err := ParseUserRules(platform)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := va.SetUserRules(ctx, parsed)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 2 || !strings.Contains(dropped[0].Error(), `platform.yaml:6: alerts[1] rule "Typo": vmalert: bad MetricsQL expr`) ||
		!strings.Contains(dropped[1].Error(), `platform.yaml:8: alerts[2] rule "BadLogs": vmalert: bad LogsQL expr`) {
		t.Fatalf("dropped = %v", dropped)
	}
	groups, err := va.Groups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !contains(groups, UserGroupPrefix+"ShopBroken") || contains(groups, UserGroupPrefix+"ShopPanics") || !contains(groups, "gluebox-platform") {
		t.Errorf("vmalert runs groups %q", groups)
	}

	// Resolve: the condition ends, and the receiver hears about it.
	broken.Store(0)
	n = waitNotification(t, team, "ShopBroken", "resolved", 40*time.Second)
	if n.Alerts[0].Status != "resolved" {
		t.Errorf("resolved notification %+v", n)
	}
	waitNotification(t, team, "ShopPanics", "resolved", 15*time.Second) // its rule is gone
	if t.Failed() {
		b, _ := os.ReadFile(vaCfg.LogFile)
		t.Logf("vmalert log:\n%s", lastLines(string(b), 30))
	}
}

// TestReceiverDown: Alertmanager keeps retrying a receiver that drops its connections, stays
// up, and delivers once the receiver is back. The receiver keeps its port the whole time (no
// re-listening on a port that someone else may have taken meanwhile): while down it closes
// every connection without an answer.
func TestReceiverDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs alertmanager")
	}
	var up atomic.Bool
	h := &hook{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if up.Load() {
			h.serve(w, r)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("cannot drop the connection: %v", err)
			return
		}
		conn.Close()
	}))
	defer h.Close()
	am := newTestAlertmanager(t, Notify{
		GroupWait: 100 * time.Millisecond, GroupInterval: time.Second,
		Receivers: []Receiver{{Name: "ops", Webhook: &Webhook{URL: h.URL + "/hook"}}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	post := `[{"labels":{"alertname":"DiskOnFire","app":"shop","env":"prod","severity":"critical","receiver":"ops"},"annotations":{"summary":"disk on fire"}}]`
	if err := doJSON(ctx, nil, http.MethodPost, am.URL()+"/api/v2/alerts", json.RawMessage(post), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "failed notifications counted", func() error {
		resp, err := http.Get(am.URL() + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, `alertmanager_notification_requests_failed_total{integration="webhook"`) && !strings.HasSuffix(l, " 0") {
				return nil
			}
		}
		return errors.New("no failed webhook requests yet")
	})
	if st := am.State(); st.State != "running" || st.Restarts != 0 {
		t.Fatalf("alertmanager state %+v while its receiver is down", st)
	}
	if _, ok := h.find("DiskOnFire", "firing"); ok {
		t.Fatal("a notification arrived while the receiver was down")
	}
	// The receiver comes back on the same address.
	up.Store(true)
	n := waitNotification(t, h, "DiskOnFire", "firing", 30*time.Second)
	if n.Receiver != "ops" || n.Alerts[0].Annotations["summary"] != "disk on fire" {
		t.Errorf("notification %+v", n)
	}
}

// TestAlertmanagerApply: a new routing is reloaded without a restart.
func TestAlertmanagerApply(t *testing.T) {
	if testing.Short() {
		t.Skip("runs alertmanager")
	}
	am := newTestAlertmanager(t, Notify{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid := am.State().PID
	n := Notify{Receivers: []Receiver{{Name: "pager", Webhook: &Webhook{URL: "http://127.0.0.1:1/pager"}}}}
	if err := am.Apply(ctx, n); err != nil {
		t.Fatal(err)
	}
	var status struct {
		Config struct {
			Original string `json:"original"`
		} `json:"config"`
	}
	if err := doJSON(ctx, nil, http.MethodGet, am.URL()+"/api/v2/status", nil, &status); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status.Config.Original, "name: pager") {
		t.Errorf("running config does not have the new receiver:\n%s", status.Config.Original)
	}
	if am.State().PID != pid {
		t.Errorf("alertmanager restarted (pid %d → %d), want a reload", pid, am.State().PID)
	}
	if err := am.Apply(ctx, Notify{DefaultReceiver: "nobody"}); err == nil {
		t.Errorf("Apply accepted a default receiver that does not exist")
	}
}

// fakeSMTP is a minimal SMTP server that accepts every mail (AUTH PLAIN offered, no TLS) and
// records the AUTH line and each message's data.
type fakeSMTP struct {
	ln    net.Listener
	mu    sync.Mutex
	auth  []string
	mails []string
}

func newFakeSMTP(t *testing.T) *fakeSMTP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeSMTP{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *fakeSMTP) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	say := func(l string) { io.WriteString(c, l+"\r\n") }
	say("220 fake ESMTP")
	var data strings.Builder
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if inData {
			if line == ".\r\n" {
				inData = false
				s.mu.Lock()
				s.mails = append(s.mails, data.String())
				s.mu.Unlock()
				data.Reset()
				say("250 queued")
				continue
			}
			data.WriteString(line)
			continue
		}
		cmd := strings.ToUpper(strings.Fields(line + " x")[0])
		switch cmd {
		case "EHLO", "HELO":
			say("250-fake")
			say("250 AUTH PLAIN")
		case "AUTH":
			s.mu.Lock()
			s.auth = append(s.auth, strings.TrimSpace(line))
			s.mu.Unlock()
			say("235 ok")
		case "DATA":
			inData = true
			say("354 go on")
		case "QUIT":
			say("221 bye")
			return
		default:
			say("250 ok")
		}
	}
}

func (s *fakeSMTP) get() (auth, mails []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...), append([]string(nil), s.mails...)
}

// TestSlackAndEmailReceivers: the generated Slack and email configurations work with
// Alertmanager's real notifiers: the Slack-compatible webhook gets the channel and the
// summary, the SMTP server the credentials and a mail about the alert.
func TestSlackAndEmailReceivers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs alertmanager")
	}
	var (
		mu    sync.Mutex
		slack []map[string]any
	)
	chat := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		slack = append(slack, m)
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer chat.Close()
	smtpd := newFakeSMTP(t)
	no := false
	am := newTestAlertmanager(t, Notify{
		GroupWait: 100 * time.Millisecond, GroupInterval: time.Second,
		Receivers: []Receiver{
			{Name: "chat", Slack: &Slack{APIURL: chat.URL + "/services/T/B/X", Channel: "#ops"}},
			{Name: "mail", Email: &Email{To: "ops@example.com", From: "gluebox@example.com", Smarthost: smtpd.ln.Addr().String(),
				Username: "gluebox", Password: "s3cret", RequireTLS: &no}},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	post := `[{"labels":{"alertname":"DiskOnFire","app":"shop","env":"prod","severity":"critical"},"annotations":{"summary":"disk on fire","description":"it is hot"}}]`
	if err := doJSON(ctx, nil, http.MethodPost, am.URL()+"/api/v2/alerts", json.RawMessage(post), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "slack message", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(slack) == 0 {
			return errors.New("none")
		}
		att, _ := slack[0]["attachments"].([]any)
		if slack[0]["channel"] != "#ops" || len(att) != 1 {
			return fmt.Errorf("message %v", slack[0])
		}
		a := att[0].(map[string]any)
		if a["title"] != "[FIRING:1] DiskOnFire shop/prod" || a["text"] != "disk on fire: it is hot\n" {
			return fmt.Errorf("attachment title %q, text %q", a["title"], a["text"])
		}
		return nil
	})
	eventually(t, 20*time.Second, "mail", func() error {
		auth, mails := smtpd.get()
		if len(mails) == 0 {
			return errors.New("none")
		}
		if len(auth) != 1 || auth[0] != "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00gluebox\x00s3cret")) {
			return fmt.Errorf("auth %q", auth)
		}
		if !strings.Contains(mails[0], "To: ops@example.com") || !strings.Contains(mails[0], "DiskOnFire") {
			return fmt.Errorf("mail:\n%.600s", mails[0])
		}
		return nil
	})
}
