package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/console"
	"github.com/gluebox/gluebox/appliance/frontdoor"
	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/follow"
	gitopsplatform "github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// platform holds the components above the node that serve the API: the registry, the secret
// store and its Kubernetes syncer, and the declared secret bindings.
type platform struct {
	reg       *registry.Registry
	sec       *secrets.Service
	syncer    *kubesync.Syncer
	bindings  *bindingFile
	gitops    *engine.Engine
	frontdoor *frontdoor.FrontDoor
	observe   *observe
	alerting  *alerting
	images    *imagebuild.Service
	previews  *preview.Store
	follower  *follow.Follower
	console   *console.Console
	// platformYAML carries each synced platform.yaml from the engine to the follower and the
	// alerting rules.
	platformYAML *gitopsplatform.Publisher

	gitopsMu       sync.Mutex
	gitopsBindings map[string][]kubesync.Binding // namespace → bindings from externalSecret values
}

// deployedDigests lists the image digests of every container running in the cluster, so the
// registry's garbage collection never removes an image in use.
func deployedDigests(cs kubernetes.Interface) func(ctx context.Context) ([]digest.Digest, error) {
	return func(ctx context.Context) ([]digest.Digest, error) {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("cannot list pods for the registry's keep set: %w", err)
		}
		var out []digest.Digest
		for _, p := range pods.Items {
			for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				if i := strings.LastIndex(st.ImageID, "@"); i >= 0 {
					if d, err := digest.Parse(st.ImageID[i+1:]); err == nil {
						out = append(out, d)
					}
				}
			}
		}
		return out, nil
	}
}

func (s *Server) newPlatform(cs kubernetes.Interface) (*platform, []supervise.Component, error) {
	l := s.layout
	reg, err := registry.New(registry.Config{Dir: l.RegistryDir(), Addr: s.cfg.RegistryAddr}, s.log.With("component", "registry"),
		registry.WithDeployed(deployedDigests(cs)))
	if err != nil {
		return nil, nil, err
	}
	secCfg := secrets.ConfigFor(l)
	if err := secCfg.Validate(); err != nil {
		return nil, nil, err
	}
	sec, err := secrets.New(secCfg, s.log.With("component", "secrets"))
	if err != nil {
		return nil, nil, err
	}
	syncer, err := kubesync.New(cs, sec.Store(), kubesync.Config{}, s.log.With("component", "secret-sync"))
	if err != nil {
		sec.Close()
		return nil, nil, err
	}
	bf := &bindingFile{path: filepath.Join(l.StateDir(), "secret-bindings.json")}
	bs, err := bf.load()
	if err != nil {
		sec.Close()
		return nil, nil, err
	}
	if err := syncer.SetBindings(bs); err != nil {
		sec.Close()
		return nil, nil, fmt.Errorf("%s: %w", bf.path, err)
	}
	p := &platform{reg: reg, sec: sec, syncer: syncer, bindings: bf, platformYAML: gitopsplatform.NewPublisher()}
	comps := []supervise.Component{
		supervise.Func{N: "registry", R: reg.Run, Ready: chanReady(reg.Ready())},
		supervise.Func{N: "secrets", R: func(ctx context.Context) error {
			err := sec.Run(ctx)
			sec.Close()
			return err
		}, Ready: chanReady(sec.Ready())},
	}
	return p, comps, nil
}

// syncerComponent runs the secret syncer; it needs the API server, so it starts last and
// stops first (before the store closes).
func (p *platform) syncerComponent() supervise.Component {
	return supervise.Func{N: "secret-sync", R: p.syncer.Run}
}

func chanReady(ch <-chan struct{}) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// register adds the platform's API routes.
func (p *platform) register(mux *http.ServeMux) {
	p.reg.Register(mux)
	p.sec.Register(mux)
	if p.gitops != nil {
		p.gitops.Register(mux)
	}
	if p.observe != nil {
		p.observe.register(mux)
	}
	if p.alerting != nil {
		p.alerting.register(mux)
	}
	if p.images != nil {
		p.images.Routes(mux)
	}
	if p.previews != nil {
		p.previews.Routes(mux)
	}
	if p.follower != nil {
		p.follower.Routes(mux)
	}
	if p.console != nil {
		p.registerConsole(mux)
	}
	if p.frontdoor != nil {
		mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
			api.WriteJSON(w, http.StatusOK, map[string]any{"routes": p.frontdoor.Routes(), "ca_file": p.frontdoor.CAFile()})
		})
	}
	mux.Handle("GET /v1/metrics/registry", p.reg.MetricsHandler())
	mux.HandleFunc("GET /v1/secret-bindings", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, p.syncer.Status())
	})
	mux.HandleFunc("PUT /v1/secret-bindings", func(w http.ResponseWriter, r *http.Request) {
		var b kubesync.Binding
		if err := api.DecodeJSON(r, 1<<16, &b); err != nil {
			api.WriteError(w, err)
			return
		}
		if err := p.bind(b); err != nil {
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "%v", err))
			return
		}
		if err := p.syncer.Sync(r.Context(), []string{b.Path}); err != nil {
			api.WriteError(w, api.Errorf(http.StatusConflict, "binding saved, first sync failed: %v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, b)
	})
	mux.HandleFunc("DELETE /v1/secret-bindings/{namespace}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := p.unbind(r.PathValue("namespace"), r.PathValue("name")); err != nil {
			api.WriteError(w, api.Errorf(http.StatusNotFound, "%v", err))
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("namespace") + "/" + r.PathValue("name")})
	})
}

func (p *platform) bind(b kubesync.Binding) error {
	if err := b.Validate(); err != nil {
		return err
	}
	return p.bindings.update(func(bs []kubesync.Binding) ([]kubesync.Binding, error) {
		out := []kubesync.Binding{b}
		for _, old := range bs {
			if old.Namespace != b.Namespace || old.Name != b.Name {
				out = append(out, old)
			}
		}
		return out, p.syncer.SetBindings(p.withGitOps(out))
	})
}

func (p *platform) unbind(ns, name string) error {
	return p.bindings.update(func(bs []kubesync.Binding) ([]kubesync.Binding, error) {
		var out []kubesync.Binding
		for _, old := range bs {
			if old.Namespace != ns || old.Name != name {
				out = append(out, old)
			}
		}
		if len(out) == len(bs) {
			return nil, fmt.Errorf("no secret binding %s/%s", ns, name)
		}
		return out, p.syncer.SetBindings(p.withGitOps(out))
	})
}

// bindingFile keeps the declared secret bindings (namespace/name ← store path) on disk until
// the GitOps engine declares them from apps' externalSecret values.
type bindingFile struct {
	mu   sync.Mutex
	path string
}

func (f *bindingFile) load() ([]kubesync.Binding, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", f.path, err)
	}
	var bs []kubesync.Binding
	if err := json.Unmarshal(b, &bs); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w (fix or remove it; bindings can be declared again with `gluebox secret bind`)", f.path, err)
	}
	return bs, nil
}

func (f *bindingFile) update(change func([]kubesync.Binding) ([]kubesync.Binding, error)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	bs, err := f.load()
	if err != nil {
		return err
	}
	out, err := change(bs)
	if err != nil {
		return err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		return err
	}
	tmp := f.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("cannot write %s: %w", tmp, err)
	}
	return os.Rename(tmp, f.path)
}
