package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/gluebox/gluebox/appliance/alerts"
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
	// svc serves the alerting routes and keeps what became of platform.yaml's rules.
	svc *alerts.Service
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
	a.svc = alerts.NewService(a.am.Client(), a.vma, a.notify.ReceiverNames(), s.log)
	s.mu.Lock()
	s.children = append(s.children, a.am, a.vma)
	s.mu.Unlock()
	p.alerting = a
	p.platformYAML.Subscribe(a.svc.SetUserRules)
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
