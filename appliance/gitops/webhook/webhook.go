// Package webhook owns gluebox's receiver for Git forge webhooks: it checks that a push or
// pull-request notification from GitHub, GitLab, Gitea or Forgejo really comes from the forge
// that hosts a repository gluebox follows, and turns it into an Event so that the repository
// is fetched at once instead of at the next poll.
//
// It owns the per-provider header and payload formats, signature and token checks, the
// replay cache and the normalisation of repository URLs used to match a payload to a
// followed repository (NormalizeURL). It does not fetch, render or apply anything, and it
// does not know where secrets are stored: the caller supplies a lookup and a callback.
//
// Lifecycle: none. A Receiver is an http.Handler with no goroutines and nothing to close;
// it is ready as soon as New returns and may be dropped at any time.
//
// Importers: the server wiring, which builds one Receiver for the GitOps engine and the app
// follower with Dispatch and mounts it on the front door; the engine and the follower, which
// are its Targets.
//
// Replies are deliberately dull. A delivery for a repository gluebox does not follow, a
// replayed delivery and an accepted one all get the same 202 reply, so the reply does not
// say which repositories exist, and forges (GitLab disables hooks that keep failing) see no
// error for a hook left behind on a repository that was removed from platform.yaml.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBodyBytes  = 1 << 20
	DefaultReplayWindow  = 24 * time.Hour
	DefaultReplayEntries = 10000
)

// Config configures a Receiver. Secret and OnEvent are required; every other zero value
// means the documented default.
type Config struct {
	// Secret returns the webhook secret of the followed repository whose normalised URL
	// (see NormalizeURL) is repoURL, and false when gluebox does not follow it. An empty
	// secret counts as not followed: a hook without a secret cannot be trusted. It is called
	// on the request goroutine, possibly concurrently, and should be fast. Required.
	Secret func(repoURL string) (secret []byte, ok bool)
	// OnEvent receives each verified, not yet seen push or pull-request event. It is called
	// on the request goroutine before the forge gets its reply, so it must not block: hand
	// the event to a channel or a worker. Required.
	OnEvent func(Event)
	// MaxBodyBytes is the largest request body accepted; larger ones get 413.
	// Zero means DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64
	// ReplayWindow is how long a delivery ID is remembered; a delivery seen again within it
	// is ignored. Zero means DefaultReplayWindow (24 h).
	ReplayWindow time.Duration
	// ReplayEntries bounds the number of delivery IDs remembered; the oldest are forgotten
	// first. Zero means DefaultReplayEntries (10000).
	ReplayEntries int
}

// Validate reports whether c can build a Receiver.
func (c Config) Validate() error {
	var errs []error
	if c.Secret == nil {
		errs = append(errs, errors.New("webhook: config: Secret lookup is required"))
	}
	if c.OnEvent == nil {
		errs = append(errs, errors.New("webhook: config: OnEvent callback is required"))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("webhook: config: MaxBodyBytes %d is negative", c.MaxBodyBytes))
	}
	if c.ReplayWindow < 0 {
		errs = append(errs, fmt.Errorf("webhook: config: ReplayWindow %s is negative", c.ReplayWindow))
	}
	if c.ReplayEntries < 0 {
		errs = append(errs, fmt.Errorf("webhook: config: ReplayEntries %d is negative", c.ReplayEntries))
	}
	return errors.Join(errs...)
}

// Receiver is the webhook endpoint: an http.Handler for POSTed forge deliveries.
type Receiver struct {
	secret  func(string) ([]byte, bool)
	onEvent func(Event)
	maxBody int64
	replay  *replayCache
	log     *slog.Logger
}

var _ http.Handler = (*Receiver)(nil)

// New returns a Receiver for cfg. A nil logger discards log lines.
func New(cfg Config, logger *slog.Logger) (*Receiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.ReplayWindow == 0 {
		cfg.ReplayWindow = DefaultReplayWindow
	}
	if cfg.ReplayEntries == 0 {
		cfg.ReplayEntries = DefaultReplayEntries
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Receiver{
		secret:  cfg.Secret,
		onEvent: cfg.OnEvent,
		maxBody: cfg.MaxBodyBytes,
		replay:  newReplayCache(cfg.ReplayEntries, cfg.ReplayWindow, time.Now),
		log:     logger.With("component", "webhook"),
	}, nil
}

// Replies. Accepted, unknown-repository and replayed deliveries share one reply on purpose.
const (
	replyAccepted = "accepted\n"
	replyIgnored  = "ignored: not a push or pull-request event\n"
)

// ServeHTTP handles one delivery. It answers 405 to anything but POST, 400 to requests
// without a known provider's event header or with a malformed payload, 413 to bodies over
// the limit, 200 to events other than push and pull request, 401 to a missing or wrong
// signature or token, and 202 otherwise, whether or not an event was delivered.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h, ok := detect(req.Header)
	if !ok {
		http.Error(w, "no known webhook event header", http.StatusBadRequest)
		return
	}
	log := r.log.With("provider", string(h.provider), "event", h.event, "delivery", h.delivery, "remote", req.RemoteAddr)

	if req.ContentLength > r.maxBody {
		log.Warn("webhook body too large", "bytes", req.ContentLength, "limit", r.maxBody)
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			log.Warn("webhook body too large", "limit", r.maxBody)
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		log.Warn("cannot read webhook body", "err", err)
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return
	}

	kind, ok := eventKind(h.provider, h.event)
	if !ok {
		log.Debug("webhook event ignored: not a push or pull request")
		io.WriteString(w, replyIgnored)
		return
	}
	if h.signature == "" {
		log.Warn("webhook refused: missing signature or token")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	p, err := parse(h.provider, kind, req.Header.Get("Content-Type"), body)
	if err != nil {
		log.Warn("webhook refused: malformed payload", "err", err)
		http.Error(w, "malformed payload", http.StatusBadRequest)
		return
	}

	repo, secret := r.lookup(p.repoURLs)
	if repo == "" {
		log.Info("webhook ignored: repository not followed or without a webhook secret", "repo", clip(p.repoURLs[0]), "candidates", len(p.repoURLs))
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, replyAccepted)
		return
	}
	log = log.With("repo", repo)
	if !verify(h.provider, secret, h.signature, body) {
		log.Warn("webhook refused: bad signature or token")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}

	key := h.delivery
	if key == "" {
		// Without a delivery ID, the same body twice is the best sign of a redelivery.
		sum := sha256.Sum256(body)
		key = "body-sha256:" + hex.EncodeToString(sum[:])
	}
	if !r.replay.add(string(h.provider) + "\x00" + repo + "\x00" + key) {
		log.Info("webhook ignored: delivery already seen")
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, replyAccepted)
		return
	}

	ev := p.event
	ev.Provider = h.provider
	ev.RepoURL = repo
	ev.DeliveryID = h.delivery
	log.Info("webhook accepted", "kind", string(ev.Kind), "ref", ev.Ref, "after", ev.After, "deleted", ev.Deleted)
	r.onEvent(ev)
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, replyAccepted)
}

// lookup returns the first candidate URL that names a followed repository with a secret.
// Every candidate comes from the same payload, and the event is reported for the one whose
// secret is then checked, so a payload cannot borrow another repository's secret.
func (r *Receiver) lookup(candidates []string) (repo string, secret []byte) {
	for _, c := range candidates {
		if s, ok := r.secret(c); ok && len(s) > 0 {
			return c, s
		}
	}
	return "", nil
}

// headers is what a delivery's headers say, once its provider is known.
type headers struct {
	provider  Provider
	event     string
	signature string // signature or token, as sent
	delivery  string
}

// detect finds the provider from the event header. Order matters: Forgejo also sends the
// Gitea headers, and Gitea also sends GitHub's, so the most specific one wins.
func detect(h http.Header) (headers, bool) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := strings.TrimSpace(h.Get(n)); v != "" {
				return v
			}
		}
		return ""
	}
	switch {
	case h.Get("X-Forgejo-Event") != "":
		return headers{Forgejo, first("X-Forgejo-Event"),
			first("X-Forgejo-Signature", "X-Gitea-Signature"),
			first("X-Forgejo-Delivery", "X-Gitea-Delivery")}, true
	case h.Get("X-Gitea-Event") != "":
		return headers{Gitea, first("X-Gitea-Event"), first("X-Gitea-Signature"), first("X-Gitea-Delivery")}, true
	case h.Get("X-Gitlab-Event") != "":
		// Idempotency-Key (GitLab 17.4+) stays the same across retries of one event.
		return headers{GitLab, first("X-Gitlab-Event"), h.Get("X-Gitlab-Token"),
			first("Idempotency-Key", "X-Gitlab-Event-UUID")}, true
	case h.Get("X-GitHub-Event") != "":
		return headers{GitHub, first("X-GitHub-Event"), first("X-Hub-Signature-256"), first("X-GitHub-Delivery")}, true
	}
	return headers{}, false
}

// verify checks a delivery's signature or token against the repository's secret.
func verify(p Provider, secret []byte, sig string, body []byte) bool {
	switch p {
	case GitLab:
		// GitLab sends the secret itself. Hashing both sides first keeps the comparison
		// constant-time in the length as well.
		a, b := sha256.Sum256([]byte(sig)), sha256.Sum256(secret)
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	case GitHub:
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		if !ok {
			return false
		}
		return hmacOK(secret, hexSig, body)
	case Gitea, Forgejo:
		return hmacOK(secret, sig, body)
	}
	return false
}

func hmacOK(secret []byte, hexSig string, body []byte) bool {
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(m.Sum(nil), got)
}
