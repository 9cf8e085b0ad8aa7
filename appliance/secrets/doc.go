// Package secrets owns gluebox's encrypted secret store: one bbolt file under
// paths.Layout.SecretsDir() in which every value, and every kept version of it, is sealed with
// filippo.io/age before it touches disk; the X25519 age identity that opens them lives next to it
// in its own 0600 file (optionally itself sealed with a passphrase). Losing the identity file is
// unrecoverable: the values cannot be decrypted without it, so operators must keep a copy of it
// away from the host (backups are sealed to the same identity).
//
// The package also owns the store's snapshot backups (under paths.Layout.BackupsDir()) and its
// routes of the local JSON API (http.go; the `gluebox secret` / `gluebox backup` commands that call
// them live in appliance/cli). Sub-package kubesync copies store paths into Kubernetes Secrets.
//
// Lifecycle: New validates the Config and opens the store (a locked, corrupt or foreign store is a
// clear error there); Run serves the backup schedule until its context ends and returns nil on
// cancel; Ready is closed once Run has loaded the backup state; Close closes the store and may be
// called more than once. Only the server wiring (cmd/gluebox, appliance supervisor) and kubesync
// should import this package for the store itself; everything else talks to the store through the
// API, importing it for the API's types only (appliance/client, appliance/cli).
package secrets
