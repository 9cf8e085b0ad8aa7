package alerts

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/api"
)

// Routes of alerting's local API.
var (
	// RouteAlerts answers the alerts Alertmanager holds ([]Alert), filtered by ?match=label=value
	// (repeatable; also !=, =~, !~).
	RouteAlerts = api.Route{Method: http.MethodGet, Pattern: "/v1/alerts"}
	// RouteSilences answers []Silence.
	RouteSilences = api.Route{Method: http.MethodGet, Pattern: "/v1/alerts/silences"}
	// RouteSilence takes SilenceRequest and answers SilenceAnswer.
	RouteSilence = api.Route{Method: http.MethodPost, Pattern: "/v1/alerts/silences"}
	// RouteExpireSilence expires a silence now and answers ExpireAnswer.
	RouteExpireSilence = api.Route{Method: http.MethodDelete, Pattern: "/v1/alerts/silences/{id}"}
	// RouteRules answers RulesStatus.
	RouteRules = api.Route{Method: http.MethodGet, Pattern: "/v1/alerts/rules"}
)

// SilenceRequest is the body of RouteSilence.
type SilenceRequest struct {
	Matchers  []string      `json:"matchers"`
	Duration  time.Duration `json:"duration"`
	CreatedBy string        `json:"created_by"`
	Comment   string        `json:"comment"`
}

// SilenceAnswer names the silence RouteSilence created.
type SilenceAnswer struct {
	ID string `json:"id"`
}

// ExpireAnswer names the silence RouteExpireSilence expired.
type ExpireAnswer struct {
	Expired string `json:"expired"`
}

// RulesStatus is the answer of RouteRules: the rule names running, the platform.yaml rules left
// out with why, and the receivers notifications go to.
type RulesStatus struct {
	Default   []string `json:"default"`
	User      []string `json:"user"`
	Dropped   []string `json:"dropped,omitempty"`
	Receivers []string `json:"receivers"`
}

// Rules is the part of vmalert the Service uses; *VMAlert is one.
type Rules interface {
	UserRules() []UserRule
	SetUserRules(ctx context.Context, rules []UserRule) ([]*RuleError, error)
}

var (
	_ Rules         = (*VMAlert)(nil)
	_ api.Registrar = (*Service)(nil)
)

// Service serves alerting's routes of the local API and keeps what became of platform.yaml's
// alert rules. It has no lifecycle of its own: it calls Alertmanager (through am) and vmalert
// (through rules) when asked, so both must run for its answers to be complete.
type Service struct {
	am        *Client
	rules     Rules
	receivers []string
	log       *slog.Logger

	mu      sync.Mutex
	dropped []string // errors of the user rules left out
}

// NewService returns a Service for Alertmanager's API client am, vmalert's rules and the names of
// the configured receivers (Notify.ReceiverNames), which platform.yaml's rules may route to.
func NewService(am *Client, rules Rules, receivers []string, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{am: am, rules: rules, receivers: receivers, log: log}
}

// SetUserRules replaces the user rules with platform.yaml's alerts (raw nil: none). Rules that
// fail their checks are left out and reported by RouteRules; the others run.
func (s *Service) SetUserRules(ctx context.Context, raw []byte) {
	var msgs []string
	var rules []UserRule
	if raw != nil {
		var err error
		rules, err = ParseUserRules(raw)
		if err != nil {
			msgs = append(msgs, err.Error())
		}
		var valid []UserRule
		valid, err = ValidateUserRules(rules, s.receivers)
		if err != nil {
			msgs = append(msgs, err.Error())
		}
		rules = valid
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dropped, err := s.rules.SetUserRules(ctx, rules)
	for _, d := range dropped {
		msgs = append(msgs, d.Error())
	}
	if err != nil {
		msgs = append(msgs, err.Error())
	}
	s.mu.Lock()
	s.dropped = msgs
	s.mu.Unlock()
	if len(msgs) > 0 {
		s.log.Warn("some platform.yaml alert rules were left out", "errors", msgs)
	}
}

// Register adds alerting's routes to mux.
func (s *Service) Register(mux *http.ServeMux) {
	RouteAlerts.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		var ms []Matcher
		for _, v := range r.URL.Query()["match"] {
			m, err := ParseMatcher(v)
			if err != nil {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
				return
			}
			ms = append(ms, m)
		}
		list, err := s.am.Alerts(r.Context(), ms...)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, list)
	})
	RouteSilences.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		list, err := s.am.Silences(r.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, list)
	})
	RouteSilence.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		var req SilenceRequest
		if err := api.DecodeJSON(r, 1<<16, &req); err != nil {
			api.WriteError(w, err)
			return
		}
		ns := NewSilence{Duration: req.Duration, CreatedBy: req.CreatedBy, Comment: req.Comment}
		for _, v := range req.Matchers {
			m, err := ParseMatcher(v)
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
		id, err := s.am.Silence(r.Context(), ns)
		if err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, SilenceAnswer{ID: id})
	})
	RouteExpireSilence.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		if err := s.am.ExpireSilence(r.Context(), r.PathValue("id")); err != nil {
			api.WriteError(w, api.Errorf(http.StatusNotFound, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, ExpireAnswer{Expired: r.PathValue("id")})
	})
	RouteRules.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		dropped := append([]string{}, s.dropped...)
		s.mu.Unlock()
		var names []string
		for _, u := range s.rules.UserRules() {
			names = append(names, u.Name)
		}
		def, _ := DefaultRuleNames()
		var defaults []string
		for n := range def {
			defaults = append(defaults, n)
		}
		api.WriteJSON(w, http.StatusOK, RulesStatus{Default: defaults, User: names, Dropped: dropped, Receivers: s.receivers})
	})
}
