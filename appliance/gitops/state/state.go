// Package state is the GitOps engine's memory: the deployment-configurations repository set at
// run time, the status of that repository and of every environment, and each environment's
// history of applied renders (kept so that a rollback can re-apply one without Git).
//
// It owns one bbolt file (<data-dir>/state/gitops.db). Values are JSON; every write is one
// transaction, so a crash leaves either the old or the new record. Nothing here talks to Git or
// Kubernetes.
//
// Lifecycle: Open, use from any goroutine, Close (idempotent). Only appliance/gitops/engine
// imports it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultKeepRevisions is how many history entries an environment keeps when Open is given 0.
const DefaultKeepRevisions = 20

var (
	bucketMeta    = []byte("meta")
	bucketEnvs    = []byte("envs")
	bucketHistory = []byte("history")
	keyRepoConfig = []byte("repo-config")
	keyRepoStatus = []byte("repo-status")
)

// ErrNotFound is returned for an environment or revision that is not recorded.
var ErrNotFound = errors.New("not found")

// RepoConfig is the deployment-configurations repository set with `gluebox repo set-config`.
type RepoConfig struct {
	URL    string `json:"url"`
	Branch string `json:"branch,omitempty"`
	// Credentials is a secret-store path holding token/username/password or ssh-key and
	// known_hosts; "" means anonymous.
	Credentials string    `json:"credentials,omitempty"`
	SetAt       time.Time `json:"set_at,omitzero"`
}

// RepoStatus is what the engine last saw of the deployment-configurations repository.
type RepoStatus struct {
	URL    string `json:"url"`
	Branch string `json:"branch,omitempty"`
	// Commit is the newest commit seen on Branch; Synced the one last rendered and applied.
	Commit      string    `json:"commit,omitempty"`
	Synced      string    `json:"synced,omitempty"`
	LastCheckAt time.Time `json:"last_check_at,omitzero"`
	LastSyncAt  time.Time `json:"last_sync_at,omitzero"`
	// LastError is the last fetch or platform.yaml error; cleared by the next good sync.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Health values of an environment.
const (
	HealthUnknown     = "Unknown"
	HealthProgressing = "Progressing"
	HealthHealthy     = "Healthy"
	HealthDegraded    = "Degraded"
)

// ObjRef names one object an environment applied, for pruning.
type ObjRef struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String is the reference as kind/namespace/name.
func (r ObjRef) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// Env is the status of one environment.
type Env struct {
	App       string `json:"app"`
	Env       string `json:"env"`
	Namespace string `json:"namespace"`
	// Commit and Digest are what runs now: the deployment-configurations commit and the render
	// digest last applied (by a sync or a rollback). Revision is its history number.
	Commit   string `json:"commit,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Revision int    `json:"revision,omitempty"`
	Source   string `json:"source,omitempty"`
	// Image is the app container's image of the running render ("registry/app@sha256:..." when
	// it follows a branch's builds); empty when the chart runs no deployment.
	Image string `json:"image,omitempty"`
	// GitDigest is the digest of the newest render from Git, applied or not (it differs from
	// Digest while held or after a render error).
	GitDigest string `json:"git_digest,omitempty"`
	Health    string `json:"health"`
	// HealthMessage says what is not ready yet or what failed.
	HealthMessage string `json:"health_message,omitempty"`
	// Held is set by a rollback: syncs leave the environment alone until Git renders something
	// other than HeldGitDigest, or `gluebox app release`.
	Held          bool   `json:"held,omitempty"`
	HeldGitDigest string `json:"held_git_digest,omitempty"`
	// LastError is the last render or apply error; the previous version keeps running.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Drift lists objects found changed or missing in the cluster and put back.
	Drift         []string  `json:"drift,omitempty"`
	DriftAt       time.Time `json:"drift_at,omitzero"`
	LastSyncAt    time.Time `json:"last_sync_at,omitzero"`
	LastAppliedAt time.Time `json:"last_applied_at,omitzero"`
	HealthyAt     time.Time `json:"healthy_at,omitzero"`
	Inventory     []ObjRef  `json:"inventory,omitempty"`
}

// Revision is one applied render of an environment.
type Revision struct {
	N         int       `json:"n"`
	Commit    string    `json:"commit"`
	Digest    string    `json:"digest"`
	AppliedAt time.Time `json:"applied_at"`
	// Reason is "sync", "build" (same commit, a new image), "rollback to N" or "release".
	Reason string `json:"reason"`
	// Image is the app container's image of this render, when known.
	Image string `json:"image,omitempty"`
	// Manifest is the applied objects as a YAML stream (not in listings).
	Manifest []byte `json:"manifest,omitempty"`
}

// Store is the engine's state file.
type Store struct {
	db        *bolt.DB
	keep      int
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the state file at path. keep bounds the history per
// environment; 0 means DefaultKeepRevisions.
func Open(path string, keep int) (*Store, error) {
	if keep <= 0 {
		keep = DefaultKeepRevisions
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("cannot open GitOps state %s: %w (is another gluebox running on this data dir?)", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketEnvs, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot initialise GitOps state %s: %w", path, err)
	}
	return &Store{db: db, keep: keep}, nil
}

// Close closes the file; later calls return the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.db.Close() })
	return s.closeErr
}

func envKey(app, env string) []byte { return []byte(app + "/" + env) }

// RepoConfig returns the repository set at run time, and false when none is.
func (s *Store) RepoConfig() (RepoConfig, bool, error) {
	var c RepoConfig
	found, err := s.get(bucketMeta, keyRepoConfig, &c)
	return c, found, err
}

// SetRepoConfig records the repository; a zero URL clears it.
func (s *Store) SetRepoConfig(c RepoConfig) error {
	if c.URL == "" {
		return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyRepoConfig) })
	}
	return s.put(bucketMeta, keyRepoConfig, c)
}

// RepoStatus returns the repository status (zero when never checked).
func (s *Store) RepoStatus() (RepoStatus, error) {
	var st RepoStatus
	_, err := s.get(bucketMeta, keyRepoStatus, &st)
	return st, err
}

// UpdateRepoStatus changes the repository status with fn in one transaction.
func (s *Store) UpdateRepoStatus(fn func(*RepoStatus)) (RepoStatus, error) {
	var st RepoStatus
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if v := b.Get(keyRepoStatus); v != nil {
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("cannot decode repository status: %w", err)
			}
		}
		fn(&st)
		return putJSON(b, keyRepoStatus, st)
	})
	return st, err
}

// Env returns one environment's status.
func (s *Store) Env(app, env string) (Env, error) {
	var e Env
	found, err := s.get(bucketEnvs, envKey(app, env), &e)
	if err == nil && !found {
		err = fmt.Errorf("environment %s/%s: %w", app, env, ErrNotFound)
	}
	return e, err
}

// Envs lists every environment, sorted by app then env.
func (s *Store) Envs() ([]Env, error) {
	var out []Env
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnvs).ForEach(func(k, v []byte) error {
			var e Env
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("cannot decode environment %s: %w", k, err)
			}
			out = append(out, e)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Env < out[j].Env
	})
	return out, err
}

// UpdateEnv changes (or creates) an environment's status with fn in one transaction.
func (s *Store) UpdateEnv(app, env string, fn func(*Env)) (Env, error) {
	var e Env
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEnvs)
		k := envKey(app, env)
		if v := b.Get(k); v != nil {
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("cannot decode environment %s/%s: %w", app, env, err)
			}
		} else {
			e = Env{App: app, Env: env, Health: HealthUnknown}
		}
		fn(&e)
		return putJSON(b, k, e)
	})
	return e, err
}

// DeleteEnv forgets an environment and its history.
func (s *Store) DeleteEnv(app, env string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEnvs).Delete(envKey(app, env)); err != nil {
			return err
		}
		err := tx.Bucket(bucketHistory).DeleteBucket(envKey(app, env))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// AddRevision records an applied render as the environment's next revision, drops the oldest
// beyond the keep limit, and returns the revision's number.
func (s *Store) AddRevision(app, env string, r Revision) (int, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketHistory).CreateBucketIfNotExists(envKey(app, env))
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		r.N = int(seq)
		if err := putJSON(b, revKey(r.N), r); err != nil {
			return err
		}
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for len(keys) > s.keep {
			if err := b.Delete(keys[0]); err != nil {
				return err
			}
			keys = keys[1:]
		}
		return nil
	})
	return r.N, err
}

// revKey sorts numerically as bytes.
func revKey(n int) []byte { return []byte(fmt.Sprintf("%010d", n)) }

// History lists an environment's revisions, newest first, without manifests.
func (s *Store) History(app, env string) ([]Revision, error) {
	var out []Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory).Bucket(envKey(app, env))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var r Revision
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("cannot decode revision %s of %s/%s: %w", k, app, env, err)
			}
			r.Manifest = nil
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Revision returns one revision with its manifest.
func (s *Store) Revision(app, env string, n int) (Revision, error) {
	var r Revision
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory).Bucket(envKey(app, env))
		if b == nil {
			return nil
		}
		v := b.Get(revKey(n))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &r)
	})
	if err == nil && !found {
		err = fmt.Errorf("revision %s of %s/%s: %w (see `gluebox app show %s %s` for the kept revisions)",
			strconv.Itoa(n), app, env, ErrNotFound, app, env)
	}
	return r, err
}

func (s *Store) get(bucket, key []byte, v any) (bool, error) {
	found := false
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucket).Get(key)
		if data == nil {
			return nil
		}
		found = true
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("cannot decode %s/%s: %w", bucket, key, err)
		}
		return nil
	})
	return found, err
}

func (s *Store) put(bucket, key []byte, v any) error {
	return s.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucket), key, v) })
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}
