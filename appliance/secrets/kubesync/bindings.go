package kubesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// Routes of the secret bindings' local API.
var (
	// RouteBindings answers []BindingStatus: every binding, declared by hand or by GitOps.
	RouteBindings = api.Route{Method: http.MethodGet, Pattern: "/v1/secret-bindings"}
	// RouteBind takes a Binding, saves it, syncs it once and answers it.
	RouteBind = api.Route{Method: http.MethodPut, Pattern: "/v1/secret-bindings"}
	// RouteUnbind removes a binding declared by hand and answers UnbindAnswer.
	RouteUnbind = api.Route{Method: http.MethodDelete, Pattern: "/v1/secret-bindings/{namespace}/{name}"}
)

// UnbindAnswer names the binding RouteUnbind removed, as namespace/name.
type UnbindAnswer struct {
	Deleted string `json:"deleted"`
}

// Bindings is the set of bindings the Syncer follows: the ones declared by hand (`gluebox secret
// bind`), kept in a JSON file, united with the ones the GitOps engine declares from apps'
// externalSecret values (held in memory, per namespace). For the same namespace/name the
// engine's wins. It serves the bindings' routes of the local API.
type Bindings struct {
	syncer *Syncer
	path   string

	fileMu sync.Mutex // serialises read-modify-write of the file

	mu     sync.Mutex
	gitops map[string][]Binding // namespace → bindings from externalSecret values
}

var _ api.Registrar = (*Bindings)(nil)

// NewBindings loads the bindings declared by hand from the file at path (missing: none) and
// hands them to syncer.
func NewBindings(syncer *Syncer, path string) (*Bindings, error) {
	b := &Bindings{syncer: syncer, path: path, gitops: map[string][]Binding{}}
	bs, err := b.load()
	if err != nil {
		return nil, err
	}
	if err := syncer.SetBindings(bs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Bind saves b (replacing a binding of the same namespace/name) and hands the syncer the new set.
func (b *Bindings) Bind(nb Binding) error {
	if err := nb.Validate(); err != nil {
		return err
	}
	return b.update(func(bs []Binding) ([]Binding, error) {
		out := []Binding{nb}
		for _, old := range bs {
			if old.Namespace != nb.Namespace || old.Name != nb.Name {
				out = append(out, old)
			}
		}
		return out, b.syncer.SetBindings(b.withGitOps(out))
	})
}

// Unbind removes the binding of ns/name declared by hand.
func (b *Bindings) Unbind(ns, name string) error {
	return b.update(func(bs []Binding) ([]Binding, error) {
		var out []Binding
		for _, old := range bs {
			if old.Namespace != ns || old.Name != name {
				out = append(out, old)
			}
		}
		if len(out) == len(bs) {
			return nil, fmt.Errorf("no secret binding %s/%s", ns, name)
		}
		return out, b.syncer.SetBindings(b.withGitOps(out))
	})
}

// SetGitOps replaces the bindings the GitOps engine declared for one namespace, hands the
// syncer the union with the ones declared by hand, and syncs the new ones' paths.
func (b *Bindings) SetGitOps(ctx context.Context, namespace string, bs []Binding) error {
	b.mu.Lock()
	if len(bs) == 0 {
		delete(b.gitops, namespace)
	} else {
		b.gitops[namespace] = bs
	}
	b.mu.Unlock()
	user, err := b.load()
	if err != nil {
		return err
	}
	if err := b.syncer.SetBindings(b.withGitOps(user)); err != nil {
		return err
	}
	var paths []string
	for _, nb := range bs {
		paths = append(paths, nb.Path)
	}
	if len(paths) == 0 {
		return nil
	}
	return b.syncer.Sync(ctx, paths)
}

// withGitOps returns user's bindings plus the engine's.
func (b *Bindings) withGitOps(user []Binding) []Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	byID := map[string]Binding{}
	for _, nb := range user {
		byID[nb.id()] = nb
	}
	for _, bs := range b.gitops {
		for _, nb := range bs {
			byID[nb.id()] = nb
		}
	}
	out := make([]Binding, 0, len(byID))
	for _, nb := range byID {
		out = append(out, nb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id() < out[j].id() })
	return out
}

func (b *Bindings) load() ([]Binding, error) {
	data, err := os.ReadFile(b.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", b.path, err)
	}
	var bs []Binding
	if err := json.Unmarshal(data, &bs); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w (fix or remove it; bindings can be declared again with `gluebox secret bind`)", b.path, err)
	}
	return bs, nil
}

func (b *Bindings) update(change func([]Binding) ([]Binding, error)) error {
	b.fileMu.Lock()
	defer b.fileMu.Unlock()
	bs, err := b.load()
	if err != nil {
		return err
	}
	out, err := change(bs)
	if err != nil {
		return err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id() < out[j].id() })
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(b.path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(b.path, data, 0o600); err != nil {
		return fmt.Errorf("cannot write %s: %w", b.path, err)
	}
	return nil
}

// Register adds the bindings' routes to mux.
func (b *Bindings) Register(mux *http.ServeMux) {
	RouteBindings.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, b.syncer.Status())
	})
	RouteBind.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		var nb Binding
		if err := api.DecodeJSON(r, 1<<16, &nb); err != nil {
			api.WriteError(w, err)
			return
		}
		if err := b.Bind(nb); err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		if err := b.syncer.Sync(r.Context(), []string{nb.Path}); err != nil {
			api.WriteError(w, api.Errorf(http.StatusConflict, "binding saved, first sync failed: %v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, nb)
	})
	RouteUnbind.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.PathValue("namespace"), r.PathValue("name")
		if err := b.Unbind(ns, name); err != nil {
			api.WriteError(w, api.Errorf(http.StatusNotFound, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, UnbindAnswer{Deleted: ns + "/" + name})
	})
}
