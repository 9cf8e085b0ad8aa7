package engine

import (
	"context"
	"errors"

	"github.com/gluebox/gluebox/appliance/gitops/state"
)

// watchHealth waits, in the background, for env's objects to become healthy and records the
// outcome. With replace, a running watch of the same environment is replaced; without, an
// environment already watched is left alone.
func (e *Engine) watchHealth(env state.Env, replace bool) {
	id := envID(env.App, env.Env)
	e.healthMu.Lock()
	parent := e.healthCtx
	if parent == nil || parent.Err() != nil {
		e.healthMu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(parent)
	w := &watch{cancel: cancel}
	if old := e.health[id]; old != nil {
		if !replace {
			e.healthMu.Unlock()
			cancel()
			return
		}
		old.cancel()
	}
	e.health[id] = w
	e.wg.Add(1) // under healthMu: stopHealth clears healthCtx before Run waits
	e.healthMu.Unlock()

	var refs []state.ObjRef
	for _, r := range env.Inventory {
		if r.Kind != "Namespace" || r.Group != "" {
			refs = append(refs, r)
		}
	}
	digest := env.Digest
	go func() {
		defer e.wg.Done()
		defer func() {
			cancel()
			e.healthMu.Lock()
			if e.health[id] == w {
				delete(e.health, id)
			}
			e.healthMu.Unlock()
		}()
		err := e.deps.Applier.Wait(ctx, refs, e.cfg.HealthTimeout)
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // replaced or stopping
		}
		_, _ = e.st.UpdateEnv(env.App, env.Env, func(s *state.Env) {
			if s.Digest != digest {
				return // superseded
			}
			if err != nil {
				s.Health, s.HealthMessage = state.HealthDegraded, err.Error()
				return
			}
			if s.Health != state.HealthHealthy {
				s.HealthyAt = e.now()
			}
			s.Health, s.HealthMessage = state.HealthHealthy, ""
		})
		if err != nil {
			e.log.Warn("environment not healthy", "app", env.App, "env", env.Env, "err", err)
		}
	}()
}

// watch is one running health wait.
type watch struct{ cancel context.CancelFunc }

// resumeHealth restarts the health watch of environments that were progressing at shutdown.
func (e *Engine) resumeHealth() {
	envs, err := e.st.Envs()
	if err != nil {
		e.log.Error("cannot read environments", "err", err)
		return
	}
	for _, env := range envs {
		if env.Health == state.HealthProgressing || env.Health == state.HealthUnknown {
			e.watchHealth(env, true)
		}
	}
}

func (e *Engine) cancelHealth(id string) {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	if w := e.health[id]; w != nil {
		w.cancel()
		delete(e.health, id)
	}
}

// stopHealth cancels every watch and lets no new one start.
func (e *Engine) stopHealth() {
	e.healthMu.Lock()
	defer e.healthMu.Unlock()
	e.healthCtx = nil
	for id, w := range e.health {
		w.cancel()
		delete(e.health, id)
	}
}
