package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/alerts"
	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// alerting is vmalert (rules over the metrics and logs stores) and Alertmanager (grouping,
// silences, receivers), with the user rules of platform.yaml.
type alerting struct {
	s      *Server
	p      *platform
	am     *alerts.Alertmanager
	vma    *alerts.VMAlert
	notify alerts.Notify

	mu      sync.Mutex
	dropped []string // errors of the user rules left out, for the API
}

// notifyConfig builds Alertmanager's routing from the config; the SMTP password is read from
// the secret store later (withSecrets).
func (s *Server) notifyConfig() alerts.Notify {
	n := alerts.Notify{
		GroupWait: s.cfg.AlertGroupWait, GroupInterval: s.cfg.AlertGroupInterval,
		Heartbeat: alerts.Heartbeat{URL: s.cfg.HeartbeatURL, Interval: s.cfg.HeartbeatInterval},
	}
	if s.cfg.AlertWebhookURL != "" {
		n.Receivers = append(n.Receivers, alerts.Receiver{Name: "webhook", Webhook: &alerts.Webhook{URL: s.cfg.AlertWebhookURL}})
	}
	if s.cfg.AlertSlackURL != "" {
		n.Receivers = append(n.Receivers, alerts.Receiver{Name: "slack", Slack: &alerts.Slack{APIURL: s.cfg.AlertSlackURL, Channel: s.cfg.AlertSlackChannel}})
	}
	if s.cfg.AlertEmailTo != "" {
		n.Receivers = append(n.Receivers, alerts.Receiver{Name: "email", Email: &alerts.Email{To: s.cfg.AlertEmailTo, From: s.cfg.AlertEmailFrom, Smarthost: s.cfg.AlertSMTPHost}})
	}
	return n
}

func (s *Server) newAlerting(bdl bundle.Dir, o *observe, p *platform) (*alerting, []supervise.Component, error) {
	l := s.layout
	a := &alerting{s: s, p: p, notify: s.notifyConfig()}
	if err := a.notify.Validate(); err != nil {
		return nil, nil, fmt.Errorf("alert notifications: %w", err)
	}
	var err error
	a.am, err = alerts.NewAlertmanager(alerts.AlertmanagerConfig{
		Binary: bdl.Bin("alertmanager"), Dir: l.Join("alerts", "alertmanager"), LogFile: filepath.Join(l.LogDir(), "alertmanager.log"),
		Notify: a.notify, Limits: s.childLimits(s.cfg.AlertingMemoryLimit, "--alerting-memory-limit", alerts.DefaultCPULimit),
	}, s.log.With("component", "alertmanager"))
	if err != nil {
		return nil, nil, err
	}
	a.vma, err = alerts.NewVMAlert(alerts.VMAlertConfig{
		Binary: bdl.Bin("vmalert"), Dir: l.Join("alerts", "vmalert"), LogFile: filepath.Join(l.LogDir(), "vmalert.log"),
		MetricsURL: o.metrics.URL(), LogsURL: o.logs.URL(), AlertmanagerURL: a.am.URL(),
		EvaluationInterval: s.cfg.AlertEvaluationInterval, Limits: s.childLimits(s.cfg.AlertingMemoryLimit, "--alerting-memory-limit", alerts.DefaultCPULimit),
	}, s.log.With("component", "vmalert"))
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.children = append(s.children, a.am, a.vma)
	s.mu.Unlock()
	p.alerting = a
	p.platformYAML.Subscribe(a.setUserRules)
	// The SMTP password lives in the secret store, which is up once this runs.
	secretsStep := supervise.Func{N: "alert-receivers", R: func(ctx context.Context) error {
		if s.cfg.AlertSMTPCredentials == "" {
			<-ctx.Done()
			return nil
		}
		v, err := p.sec.Store().Values(ctx, s.cfg.AlertSMTPCredentials)
		if err != nil {
			s.log.Warn("alert mails are sent without SMTP authentication", "err", err)
		} else {
			for i := range a.notify.Receivers {
				if e := a.notify.Receivers[i].Email; e != nil {
					e.Username, e.Password = string(v["username"]), string(v["password"])
				}
			}
			if err := a.am.Apply(ctx, a.notify); err != nil {
				s.log.Error("cannot apply alert receivers", "err", err)
			}
		}
		<-ctx.Done()
		return nil
	}}
	return a, []supervise.Component{a.am, a.vma, secretsStep}, nil
}

// setUserRules replaces the user rules with platform.yaml's (raw nil: none). Rules that fail
// their checks are left out and reported; the others run.
func (a *alerting) setUserRules(ctx context.Context, raw []byte) {
	var msgs []string
	var rules []alerts.UserRule
	if raw != nil {
		var err error
		rules, err = alerts.ParseUserRules(raw)
		if err != nil {
			msgs = append(msgs, err.Error())
		}
		var valid []alerts.UserRule
		valid, err = alerts.ValidateUserRules(rules, a.notify.ReceiverNames())
		if err != nil {
			msgs = append(msgs, err.Error())
		}
		rules = valid
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dropped, err := a.vma.SetUserRules(ctx, rules)
	for _, d := range dropped {
		msgs = append(msgs, d.Error())
	}
	if err != nil {
		msgs = append(msgs, err.Error())
	}
	a.mu.Lock()
	a.dropped = msgs
	a.mu.Unlock()
	if len(msgs) > 0 {
		a.s.log.Warn("some platform.yaml alert rules were left out", "errors", msgs)
	}
}

// register adds /v1/alerts routes.
func (a *alerting) register(mux *http.ServeMux) {
	client := a.am.Client()
	mux.HandleFunc("GET /v1/alerts", func(w http.ResponseWriter, r *http.Request) {
		var ms []alerts.Matcher
		for _, s := range r.URL.Query()["match"] {
			m, err := alerts.ParseMatcher(s)
			if err != nil {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
				return
			}
			ms = append(ms, m)
		}
		list, err := client.Alerts(r.Context(), ms...)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("GET /v1/alerts/silences", func(w http.ResponseWriter, r *http.Request) {
		list, err := client.Silences(r.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST /v1/alerts/silences", func(w http.ResponseWriter, r *http.Request) {
		var req SilenceRequest
		if err := api.DecodeJSON(r, 1<<16, &req); err != nil {
			api.WriteError(w, err)
			return
		}
		ns := alerts.NewSilence{Duration: req.Duration, CreatedBy: req.CreatedBy, Comment: req.Comment}
		for _, s := range req.Matchers {
			m, err := alerts.ParseMatcher(s)
			if err != nil {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
				return
			}
			ns.Matchers = append(ns.Matchers, m)
		}
		if len(ns.Matchers) == 0 || ns.Duration <= 0 {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "a silence needs at least one matcher (alertname=X) and a positive duration"))
			return
		}
		id, err := client.Silence(r.Context(), ns)
		if err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"id": id})
	})
	mux.HandleFunc("DELETE /v1/alerts/silences/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := client.ExpireSilence(r.Context(), r.PathValue("id")); err != nil {
			api.WriteError(w, api.Errorf(http.StatusNotFound, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"expired": r.PathValue("id")})
	})
	mux.HandleFunc("GET /v1/alerts/rules", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		dropped := append([]string{}, a.dropped...)
		a.mu.Unlock()
		var names []string
		for _, u := range a.vma.UserRules() {
			names = append(names, u.Name)
		}
		def, _ := alerts.DefaultRuleNames()
		var defaults []string
		for n := range def {
			defaults = append(defaults, n)
		}
		api.WriteJSON(w, http.StatusOK, RulesStatus{Default: defaults, User: names, Dropped: dropped, Receivers: a.notify.ReceiverNames()})
	})
}

// SilenceRequest is the body of POST /v1/alerts/silences.
type SilenceRequest struct {
	Matchers  []string      `json:"matchers"`
	Duration  time.Duration `json:"duration"`
	CreatedBy string        `json:"created_by"`
	Comment   string        `json:"comment"`
}

// RulesStatus is GET /v1/alerts/rules.
type RulesStatus struct {
	Default   []string `json:"default"`
	User      []string `json:"user"`
	Dropped   []string `json:"dropped,omitempty"`
	Receivers []string `json:"receivers"`
}
