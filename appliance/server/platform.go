package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

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
	bindings  *kubesync.Bindings
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
	bf, err := kubesync.NewBindings(syncer, filepath.Join(l.StateDir(), "secret-bindings.json"))
	if err != nil {
		sec.Close()
		return nil, nil, err
	}
	p := &platform{reg: reg, sec: sec, syncer: syncer, bindings: bf, platformYAML: gitopsplatform.NewPublisher()}
	comps := []supervise.Component{
		supervise.Func{N: "registry", R: reg.Run, Ready: reg.WaitReady},
		supervise.Func{N: "secrets", R: func(ctx context.Context) error {
			err := sec.Run(ctx)
			if ctx.Err() != nil { // not before: the Group runs a failed Run again
				sec.Close()
			}
			return err
		}, Ready: sec.WaitReady},
	}
	return p, comps, nil
}

// syncerComponent runs the secret syncer; it needs the API server, so it starts last and
// stops first (before the store closes).
func (p *platform) syncerComponent() supervise.Component {
	return supervise.Func{N: "secret-sync", R: p.syncer.Run}
}

// register adds the platform's API routes: each component registers its own.
func (p *platform) register(mux *http.ServeMux) {
	owners := []api.Registrar{p.reg, p.sec, p.bindings}
	if p.gitops != nil {
		owners = append(owners, p.gitops)
	}
	if p.observe != nil {
		owners = append(owners, p.observe.apis()...)
	}
	if p.alerting != nil {
		owners = append(owners, p.alerting.svc)
	}
	if p.console != nil {
		owners = append(owners, p.console)
	}
	if p.frontdoor != nil {
		owners = append(owners, p.frontdoor)
	}
	for _, o := range owners {
		o.Register(mux)
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
}
