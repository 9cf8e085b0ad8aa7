package webhook

import (
	"context"
	"time"
)

// Target is one owner of followed repositories: the GitOps engine (the
// deployment-configurations repository) or the app follower (platform.yaml's app
// repositories). A Receiver built with Dispatch asks each target in turn.
type Target interface {
	// WebhookSecret returns the secret that verifies deliveries for repoURL (normalised, see
	// NormalizeURL) and true, or false when the target does not follow repoURL. It must be
	// fast and safe for concurrent use.
	WebhookSecret(repoURL string) ([]byte, bool)
	// HandleEvent takes a verified event. Events of repositories the target does not follow
	// are ignored. It must not block.
	HandleEvent(Event)
}

// Dispatch returns the Config of a Receiver that serves several targets: a delivery is
// verified with the secret of the first target that follows its repository, and the event is
// handed to every target (each keeps only its own repositories' events).
func Dispatch(targets ...Target) Config {
	return Config{
		Secret: func(repoURL string) ([]byte, bool) {
			for _, t := range targets {
				if s, ok := t.WebhookSecret(repoURL); ok {
					return s, true
				}
			}
			return nil, false
		},
		OnEvent: func(ev Event) {
			for _, t := range targets {
				t.HandleEvent(ev)
			}
		},
	}
}

// DefaultSecretPath is the secret-store path of the gluebox-wide webhook secret (key "secret"),
// used for repositories whose credentials hold no "webhook-secret" key. The GitOps engine
// creates it on first start.
const DefaultSecretPath = "secret/gluebox/webhook"

// SecretReader reads secret-store values.
type SecretReader interface {
	Values(ctx context.Context, path string) (map[string][]byte, error)
}

// secretTimeout bounds the secret-store reads of one delivery's verification.
const secretTimeout = 5 * time.Second

// LookupSecret returns the webhook secret of a repository whose credentials are at
// credentials (may be empty): their "webhook-secret" key, else the gluebox-wide secret at
// DefaultSecretPath. ok is false when neither exists.
func LookupSecret(secrets SecretReader, credentials string) (secret []byte, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), secretTimeout)
	defer cancel()
	if credentials != "" {
		if v, err := secrets.Values(ctx, credentials); err == nil && len(v["webhook-secret"]) > 0 {
			return v["webhook-secret"], true
		}
	}
	v, err := secrets.Values(ctx, DefaultSecretPath)
	if err != nil || len(v["secret"]) == 0 {
		return nil, false
	}
	return v["secret"], true
}
