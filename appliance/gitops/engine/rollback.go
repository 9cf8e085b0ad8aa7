package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/gluebox/gluebox/appliance/gitops/state"
)

// Rollback re-applies revision to (0: the newest revision older than the running one with a
// different render) and holds the environment there.
func (e *Engine) Rollback(ctx context.Context, app, env string, to int) (state.Env, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := e.st.Env(app, env)
	if err != nil {
		return state.Env{}, err
	}
	if to == 0 {
		hist, err := e.st.History(app, env)
		if err != nil {
			return state.Env{}, err
		}
		for _, r := range hist {
			if r.N < cur.Revision && r.Digest != cur.Digest {
				to = r.N
				break
			}
		}
		if to == 0 {
			return state.Env{}, &InputError{fmt.Sprintf("%s/%s has no earlier revision to roll back to", app, env)}
		}
	}
	if to == cur.Revision {
		return state.Env{}, &InputError{fmt.Sprintf("%s/%s already runs revision %d", app, env, to)}
	}
	rev, err := e.st.Revision(app, env, to)
	if err != nil {
		return state.Env{}, err
	}
	objs, err := decodeManifest(rev.Manifest)
	if err != nil {
		return state.Env{}, fmt.Errorf("revision %d of %s/%s: %w", to, app, env, err)
	}
	ar, err := e.deps.Applier.Apply(ctx, e.set(app, env, rev.Commit, objs), cur.Inventory)
	now := e.now()
	if err != nil {
		_, _ = e.st.UpdateEnv(app, env, func(s *state.Env) {
			if len(ar.Inventory) > 0 {
				s.Inventory = ar.Inventory
			}
			s.LastError, s.LastErrorAt = fmt.Sprintf("rollback to revision %d: %v", to, err), now
		})
		return state.Env{}, err
	}
	n, err := e.st.AddRevision(app, env, state.Revision{Commit: rev.Commit, Digest: rev.Digest, AppliedAt: now, Reason: fmt.Sprintf("rollback to %d", to), Image: rev.Image, Manifest: rev.Manifest})
	if err != nil {
		return state.Env{}, err
	}
	st, err := e.st.UpdateEnv(app, env, func(s *state.Env) {
		s.Commit, s.Digest, s.Revision, s.Inventory, s.LastAppliedAt = rev.Commit, rev.Digest, n, ar.Inventory, now
		s.Image = rev.Image
		s.Held, s.HeldGitDigest = true, s.GitDigest
		s.Health, s.HealthMessage = state.HealthProgressing, "waiting for the rolled-back objects to become ready"
		s.LastError, s.LastErrorAt = "", time.Time{}
	})
	if err != nil {
		return state.Env{}, err
	}
	e.log.Info("environment rolled back and held", "app", app, "env", env, "to", to, "revision", n)
	e.watchHealth(st, true)
	return st, nil
}

// Release lifts a rollback hold and syncs the environment back to Git at once.
func (e *Engine) Release(ctx context.Context, app, env string) (state.Env, error) {
	e.mu.Lock()
	cur, err := e.st.Env(app, env)
	if err == nil && !cur.Held {
		err = &InputError{fmt.Sprintf("%s/%s is not held (only a rollback holds an environment)", app, env)}
	}
	if err == nil {
		// Forget the held digest so the next sync applies Git's render even if unchanged.
		cur, err = e.st.UpdateEnv(app, env, func(s *state.Env) { s.Held, s.HeldGitDigest, s.Digest = false, "", "" })
	}
	e.mu.Unlock()
	if err != nil {
		return state.Env{}, err
	}
	e.Trigger()
	return cur, nil
}

// InputError is a request the engine refuses as it stands (the API answers 400).
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// decodeManifest reads a YAML stream of objects.
func decodeManifest(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("cannot decode stored manifest: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}
