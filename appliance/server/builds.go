package server

import (
	"path/filepath"

	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/gitops/follow"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// newBuilds prepares the image builder (buildkitd, builder, queue and its image index) and the
// preview store. The logs store, when observability runs, receives every build's log.
func (s *Server) newBuilds(bdl bundle.Dir, p *platform) (*imagebuild.Service, *preview.Store, error) {
	l := s.layout
	var sink imagebuild.LogSink
	if p.observe != nil && p.observe.logs != nil {
		sink = p.observe.logs.Client()
	}
	svc, err := imagebuild.NewService(imagebuild.ServiceConfig{
		Daemon: imagebuild.Config{
			Bin:              bdl.Bin("buildkitd"),
			Dir:              l.Join("buildkit"),
			LogFile:          filepath.Join(l.LogDir(), "buildkitd.log"),
			ContainerdSocket: l.ContainerdSocket(),
			Runc:             bdl.Bin("runc"),
			Registry:         s.cfg.RegistryAddr,
		},
		Timeout: s.cfg.BuildTimeout,
		Queue:   imagebuild.QueueConfig{Dir: filepath.Join(l.StateDir(), "builds"), Concurrency: s.cfg.BuildConcurrency},
	}, sink, s.log)
	if err != nil {
		return nil, nil, err
	}
	prev, err := preview.New(preview.Config{
		Dir:      filepath.Join(l.GitOpsDir(), "builds"),
		Branches: s.cfg.PreviewBranches,
		TTL:      s.cfg.PreviewTTL,
	}, svc.Index(), s.log)
	if err != nil {
		return nil, nil, err
	}
	p.images, p.previews = svc, prev
	return svc, prev, nil
}

// newFollower prepares the app follower: it reads platform.yaml from the publisher the engine
// publishes into, submits builds to the queue and asks the engine for syncs.
func (s *Server) newFollower(svc *imagebuild.Service, prev *preview.Store, trigger follow.Trigger, p *platform) (*follow.Follower, error) {
	f, err := follow.New(follow.Config{
		Dir:          filepath.Join(s.layout.GitOpsDir(), "builds"),
		Registry:     s.cfg.RegistryAddr,
		PollInterval: s.cfg.PollInterval,
		Domain:       s.cfg.Domain,
	}, follow.Deps{
		Queue:    svc.Queue(),
		Previews: prev,
		Platform: p.platformYAML,
		Engine:   trigger,
		Secrets:  p.sec.Store(),
		Logger:   s.log,
	})
	if err != nil {
		return nil, err
	}
	if p.observe != nil {
		p.observe.registry.MustRegister(svc.Collector(f))
	}
	p.follower = f
	return f, nil
}

// buildComponents are the builder's components in start order.
func buildComponents(svc *imagebuild.Service, f *follow.Follower) []supervise.Component {
	return append(svc.Components(), f)
}
