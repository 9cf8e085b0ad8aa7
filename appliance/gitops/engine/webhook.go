package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/gluebox/gluebox/appliance/gitops/webhook"
)

var _ webhook.Target = (*Engine)(nil)

// HandleEvent triggers a sync when a verified push names the followed repository (on its
// branch); other repositories' events are ignored (the app follower takes the app
// repositories').
func (e *Engine) HandleEvent(ev webhook.Event) {
	rc, ok, err := e.repoConfig()
	if err != nil || !ok {
		return
	}
	want, err := webhook.NormalizeURL(rc.URL)
	if err != nil || want != ev.RepoURL {
		return
	}
	if ev.Kind == webhook.KindPush && rc.Branch != "" && ev.Ref != "refs/heads/"+rc.Branch {
		e.log.Debug("webhook push to another branch ignored", "ref", ev.Ref)
		return
	}
	e.log.Info("webhook: deployment-configurations changed; syncing now", "provider", ev.Provider, "ref", ev.Ref, "after", short(ev.After))
	e.wake()
}

// WebhookSecret returns the secret that verifies deliveries for repoURL when it is the
// followed repository: its credentials' "webhook-secret" key, else the gluebox-wide secret.
func (e *Engine) WebhookSecret(repoURL string) ([]byte, bool) {
	rc, set, err := e.repoConfig()
	if err != nil || !set {
		return nil, false
	}
	if want, err := webhook.NormalizeURL(rc.URL); err != nil || want != repoURL {
		return nil, false
	}
	return webhook.LookupSecret(e.deps.Secrets, rc.Credentials)
}

// ensureWebhookSecret creates the gluebox-wide webhook secret on first start.
func (e *Engine) ensureWebhookSecret(ctx context.Context) error {
	if v, err := e.deps.Secrets.Values(ctx, WebhookSecretPath); err == nil && len(v["secret"]) > 0 {
		return nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("cannot make the webhook secret: %w", err)
	}
	if _, err := e.deps.Secrets.Set(ctx, WebhookSecretPath, map[string][]byte{"secret": []byte(hex.EncodeToString(b))}, "gluebox"); err != nil {
		return fmt.Errorf("cannot store the webhook secret: %w", err)
	}
	return nil
}
