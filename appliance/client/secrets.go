package client

import (
	"context"
	"net/url"
	"strconv"

	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
)

// SecretOptions choose what Secret reads: a kept Version (0: the newest) and one Key ("": all).
type SecretOptions struct {
	Version uint64
	Key     string
}

// Secrets lists the store's paths under prefix ("" for all): names and keys, never values.
func (c *Client) Secrets(ctx context.Context, prefix string) ([]secrets.PathInfo, error) {
	var q url.Values
	if prefix != "" {
		q = url.Values{"prefix": {prefix}}
	}
	var out []secrets.PathInfo
	return out, c.call(ctx, secrets.RouteList, nil, q, nil, &out)
}

// Secret returns the values of path.
func (c *Client) Secret(ctx context.Context, path string, o SecretOptions) (secrets.SecretAnswer, error) {
	q := url.Values{}
	if o.Version > 0 {
		q.Set("version", strconv.FormatUint(o.Version, 10))
	}
	if o.Key != "" {
		q.Set("key", o.Key)
	}
	var out secrets.SecretAnswer
	return out, c.call(ctx, secrets.RouteGet, []string{path}, q, nil, &out)
}

// SetSecret sets keys of path.
func (c *Client) SetSecret(ctx context.Context, path string, req secrets.SetRequest) (secrets.VersionAnswer, error) {
	var out secrets.VersionAnswer
	return out, c.call(ctx, secrets.RouteSet, []string{path}, nil, req, &out)
}

// DeleteSecret deletes keys of path, or the whole path with its history when keys is empty; by
// names who asks, for the audit log.
func (c *Client) DeleteSecret(ctx context.Context, path string, keys []string, by string) (secrets.VersionAnswer, error) {
	q := url.Values{}
	if by != "" {
		q.Set("by", by)
	}
	for _, k := range keys {
		q.Add("key", k)
	}
	var out secrets.VersionAnswer
	return out, c.call(ctx, secrets.RouteDelete, []string{path}, q, nil, &out)
}

// SecretHistory lists the kept versions of path.
func (c *Client) SecretHistory(ctx context.Context, path string) ([]secrets.VersionInfo, error) {
	return get[[]secrets.VersionInfo](ctx, c, secrets.RouteHistory, path)
}

// RollbackSecret makes an older version of path the newest again.
func (c *Client) RollbackSecret(ctx context.Context, path string, req secrets.RollbackRequest) (secrets.VersionAnswer, error) {
	var out secrets.VersionAnswer
	return out, c.call(ctx, secrets.RouteRollback, []string{path}, nil, req, &out)
}

// ImportSecrets imports keys from a .env file or a JSON object.
func (c *Client) ImportSecrets(ctx context.Context, req secrets.ImportRequest) (secrets.ImportAnswer, error) {
	var out secrets.ImportAnswer
	return out, c.call(ctx, secrets.RouteImport, nil, nil, req, &out)
}

// RotateKey re-seals every value under a new identity.
func (c *Client) RotateKey(ctx context.Context, req secrets.ByRequest) (secrets.RotateAnswer, error) {
	var out secrets.RotateAnswer
	return out, c.call(ctx, secrets.RouteRotateKey, nil, nil, req, &out)
}

// SecretsAudit returns the newest limit audit entries (0: the server's default).
func (c *Client) SecretsAudit(ctx context.Context, limit int) ([]secrets.AuditEntry, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	var out []secrets.AuditEntry
	return out, c.call(ctx, secrets.RouteAudit, nil, q, nil, &out)
}

// SecretsStatus returns the store's status.
func (c *Client) SecretsStatus(ctx context.Context) (secrets.Status, error) {
	return get[secrets.Status](ctx, c, secrets.RouteStatus)
}

// Backups lists the backups, newest first.
func (c *Client) Backups(ctx context.Context) ([]secrets.Manifest, error) {
	return get[[]secrets.Manifest](ctx, c, secrets.RouteBackups)
}

// CreateBackup takes a backup now; it is verified before this returns.
func (c *Client) CreateBackup(ctx context.Context, req secrets.ByRequest) (secrets.Manifest, error) {
	var out secrets.Manifest
	return out, c.call(ctx, secrets.RouteBackupCreate, nil, nil, req, &out)
}

// VerifyBackup checks that every value of a backup decrypts.
func (c *Client) VerifyBackup(ctx context.Context, req secrets.BackupFileRequest) (secrets.VerifyReport, error) {
	var out secrets.VerifyReport
	return out, c.call(ctx, secrets.RouteBackupVerify, nil, nil, req, &out)
}

// RestoreBackup replaces the store with a backup.
func (c *Client) RestoreBackup(ctx context.Context, req secrets.BackupFileRequest) (secrets.RestoreReport, error) {
	var out secrets.RestoreReport
	return out, c.call(ctx, secrets.RouteBackupRestore, nil, nil, req, &out)
}

// SecretBindings lists the Kubernetes Secrets kept in step with the store.
func (c *Client) SecretBindings(ctx context.Context) ([]kubesync.BindingStatus, error) {
	return get[[]kubesync.BindingStatus](ctx, c, kubesync.RouteBindings)
}

// Bind keeps a Kubernetes Secret in step with a store path.
func (c *Client) Bind(ctx context.Context, b kubesync.Binding) (kubesync.Binding, error) {
	var out kubesync.Binding
	return out, c.call(ctx, kubesync.RouteBind, nil, nil, b, &out)
}

// Unbind stops syncing the Secret name in namespace (the Secret itself stays).
func (c *Client) Unbind(ctx context.Context, namespace, name string) (kubesync.UnbindAnswer, error) {
	var out kubesync.UnbindAnswer
	return out, c.call(ctx, kubesync.RouteUnbind, []string{namespace, name}, nil, nil, &out)
}
