package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/gluebox/gluebox/appliance/alerts"
	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// alertingStack is vmalert (rules over the metrics and logs stores) and Alertmanager
// (grouping, silences, receivers); svc serves the alerting routes and takes platform.yaml's
// user rules.
type alertingStack struct {
	am     *alerts.Alertmanager
	vma    *alerts.VMAlert
	notify alerts.Notify
	svc    *alerts.Service
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

func (s *Server) newAlerting(bdl bundle.Dir, o *observe) (*alertingStack, error) {
	l := s.layout
	a := &alertingStack{notify: s.notifyConfig()}
	if err := a.notify.Validate(); err != nil {
		return nil, fmt.Errorf("alert notifications: %w", err)
	}
	var err error
	a.am, err = alerts.NewAlertmanager(alerts.AlertmanagerConfig{
		Binary: bdl.Bin("alertmanager"), Dir: l.Join("alerts", "alertmanager"), LogFile: filepath.Join(l.LogDir(), "alertmanager.log"),
		Notify: a.notify, Limits: s.childLimits(s.cfg.AlertingMemoryLimit, "--alerting-memory-limit", alerts.DefaultCPULimit),
	}, s.log.With("component", "alertmanager"))
	if err != nil {
		return nil, err
	}
	a.vma, err = alerts.NewVMAlert(alerts.VMAlertConfig{
		Binary: bdl.Bin("vmalert"), Dir: l.Join("alerts", "vmalert"), LogFile: filepath.Join(l.LogDir(), "vmalert.log"),
		MetricsURL: o.metrics.URL(), LogsURL: o.logs.URL(), AlertmanagerURL: a.am.URL(),
		EvaluationInterval: s.cfg.AlertEvaluationInterval, Limits: s.childLimits(s.cfg.AlertingMemoryLimit, "--alerting-memory-limit", alerts.DefaultCPULimit),
	}, s.log.With("component", "vmalert"))
	if err != nil {
		return nil, err
	}
	a.svc = alerts.NewService(a.am.Client(), a.vma, a.notify.ReceiverNames(), s.log)
	return a, nil
}

// components are Alertmanager, vmalert and a step that gives Alertmanager the SMTP
// credentials (secret-store path smtp, "" for none) once the secret store is up.
func (a *alertingStack) components(smtp string, store *secrets.Store, log *slog.Logger) []supervise.Component {
	receivers := supervise.Func{N: "alert-receivers", R: func(ctx context.Context) error {
		if smtp == "" {
			<-ctx.Done()
			return nil
		}
		v, err := store.Values(ctx, smtp)
		if err != nil {
			log.Warn("alert mails are sent without SMTP authentication", "err", err)
		} else {
			n := a.notify
			n.Receivers = slices.Clone(n.Receivers)
			for i := range n.Receivers {
				if e := n.Receivers[i].Email; e != nil {
					withAuth := *e
					withAuth.Username, withAuth.Password = string(v["username"]), string(v["password"])
					n.Receivers[i].Email = &withAuth
				}
			}
			if err := a.am.Apply(ctx, n); err != nil {
				log.Error("cannot apply alert receivers", "err", err)
			}
		}
		<-ctx.Done()
		return nil
	}}
	return []supervise.Component{a.am, a.vma, receivers}
}
