package server

import (
	"fmt"
	"net/http"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gluebox/gluebox/appliance/frontdoor"
	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// newGitOps builds the GitOps engine on top of the platform: it reads repository credentials
// and the webhook secret from the secret store, declares apps' externalSecret bindings, runs
// the images of the build queue's index and the previews of the preview store, and publishes
// each synced platform.yaml.
func (s *Server) newGitOps(restCfg *rest.Config, images engine.Images, previews engine.Previews, p *platform) (*engine.Engine, supervise.Component, error) {
	ap, err := apply.New(restCfg)
	if err != nil {
		return nil, nil, err
	}
	eng, err := engine.New(engine.Config{
		Repo:           state.RepoConfig{URL: s.cfg.ConfigRepo, Branch: s.cfg.ConfigRepoBranch, Credentials: s.cfg.ConfigRepoCredentials},
		Dir:            s.layout.GitOpsDir(),
		PollInterval:   s.cfg.PollInterval,
		ResyncInterval: s.cfg.ResyncInterval,
		HealthTimeout:  s.cfg.HealthTimeout,
		Domain:         s.cfg.Domain,
		Registry:       registry.Host,
	}, engine.Deps{
		Applier:     ap,
		Secrets:     p.sec.Store(),
		SetBindings: p.bindings.SetGitOps,
		Platform:    p.platformYAML,
		Images:      images,
		Previews:    previews,
		Logger:      s.log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cannot start the GitOps engine: %w", err)
	}
	p.gitops = eng
	if p.observe != nil {
		p.observe.history = eng
	}
	return eng, supervise.Func{N: "gitops", R: eng.Run, Ready: eng.WaitReady}, nil
}

// newFrontDoor builds the front door: Ingress routing on --http-addr/--https-addr, with the
// Git webhook receiver mounted on every host. Deliveries for the deployment-configurations
// repository go to the engine, those for app repositories to the follower.
func (s *Server) newFrontDoor(cs kubernetes.Interface, targets []webhook.Target, p *platform) (*frontdoor.FrontDoor, error) {
	hook, err := webhook.New(webhook.Dispatch(targets...), s.log)
	if err != nil {
		return nil, err
	}
	fd, err := frontdoor.New(frontdoor.Config{
		HTTPAddr:  s.cfg.HTTPAddr,
		HTTPSAddr: s.cfg.HTTPSAddr,
		Client:    cs,
		CertDir:   s.layout.FrontDoorDir(),
		Handlers:  map[string]http.Handler{engine.WebhookPath: hook},
		Logger:    s.log.With("component", "frontdoor"),
	})
	if err != nil {
		return nil, err
	}
	p.frontdoor = fd
	return fd, nil
}
