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
	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/console"
	"github.com/gluebox/gluebox/appliance/dashboards"
	"github.com/gluebox/gluebox/appliance/dns"
	"github.com/gluebox/gluebox/appliance/frontdoor"
	"github.com/gluebox/gluebox/appliance/gitops/apply"
	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/follow"
	gitopsplatform "github.com/gluebox/gluebox/appliance/gitops/platform"
	"github.com/gluebox/gluebox/appliance/gitops/preview"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/gitops/webhook"
	"github.com/gluebox/gluebox/appliance/hostcheck"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/localpath"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/appliance/node"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// wiring is everything `gluebox server` runs above the host, as wire built it: nothing in it
// changes after wire returns.
type wiring struct {
	// components in start order; the Group stops them in reverse.
	components []supervise.Component
	// routes are the owners of the local API's routes.
	routes []api.Registrar
	// children are the supervised programs whose state `gluebox status` shows.
	children []interface{ State() supervise.ChildState }
	// reg and sec add their status to `gluebox status`.
	reg *registry.Registry
	sec *secrets.Service
}

// wire constructs every component in dependency order, each given what it needs as constructor
// arguments, and lists them in the order the supervisor starts them. It starts nothing.
//
// The data path, in construction order: the registry; the secret store and its syncer; the
// observability stores (the builder ships build logs to them); the build queue with its image
// index, and the preview store that reads the index; the GitOps engine (renders with the
// index and the previews, publishes platform.yaml); the app follower (subscribes to
// platform.yaml, submits builds to the queue, asks the engine for syncs); the front door, whose
// webhook receiver dispatches to the engine and the follower.
func (s *Server) wire(bdl bundle.Dir, netw kube.ClusterNetwork, certs *kube.Certs) (*wiring, error) {
	l := s.layout
	args, err := kubeOverrides(s.cfg.APIServerArgs, s.cfg.ControllerManagerArgs, s.cfg.SchedulerArgs, s.cfg.KubeletArgs, s.cfg.KubeProxyArgs)
	if err != nil {
		return nil, err
	}
	apiArgs, cmArgs, schedArgs, kubeletArgs, proxyArgs := args[0], args[1], args[2], args[3], args[4]

	// The node.
	ds := kube.NewDatastore(l.DatastoreDir(), s.cfg.DatastoreEndpoint, filepath.Join(l.LogDir(), "kine.log"), s.log.With("component", "datastore"))
	ctrd, err := node.NewContainerd(node.ContainerdConfig{
		Layout:              l,
		Bundle:              bdl,
		RestrictOOMScoreAdj: node.RestrictOOMScoreAdjNeeded(),
		Registries:          registryMirrors(s.cfg.RegistryAddr),
	}, s.log.With("component", "containerd"))
	if err != nil {
		return nil, err
	}
	kubelet, err := node.NewKubelet(node.KubeletConfig{
		Layout: l, Certs: certs, Net: netw, CgroupV1: hostcheck.CgroupV1(), ResolvConf: hostResolvConf(),
		CgroupRoot: l.CgroupRoot(), ExtraArgs: kubeletArgs,
	}, s.log.With("component", "kubelet"))
	if err != nil {
		return nil, err
	}
	proxy, err := node.NewProxy(node.ProxyConfig{Layout: l, Certs: certs, Net: netw, ExtraArgs: proxyArgs}, s.log.With("component", "kube-proxy"))
	if err != nil {
		return nil, err
	}
	dnsIP, err := netw.ServiceIP(10)
	if err != nil {
		return nil, err
	}
	clusterDNS, err := dns.New(dns.Config{
		Binary: bdl.Bin("coredns"), Dir: l.Join("coredns"), LogFile: filepath.Join(l.LogDir(), "coredns.log"),
		NodeIP: netw.NodeIP, ServiceIP: dnsIP, Kubeconfig: certs.CoreDNSKubecfg, Upstream: hostResolvConf(),
	}, s.log.With("component", "coredns"))
	if err != nil {
		return nil, err
	}
	cs, err := kube.ClientFromKubeconfig(certs.SupervisorKubecfg)
	if err != nil {
		return nil, err
	}
	restCfg, err := kube.RESTConfig(certs.SupervisorKubecfg)
	if err != nil {
		return nil, err
	}

	// Registry and secret store.
	reg, err := registry.New(registry.Config{Dir: l.RegistryDir(), Addr: s.cfg.RegistryAddr}, s.log.With("component", "registry"),
		registry.WithDeployed(deployedDigests(cs)))
	if err != nil {
		return nil, err
	}
	secCfg := secrets.ConfigFor(l)
	if err := secCfg.Validate(); err != nil {
		return nil, err
	}
	sec, err := secrets.New(secCfg, s.log.With("component", "secrets"))
	if err != nil {
		return nil, err
	}
	// Until wire succeeds, what it opened is closed again on the way out.
	var obs *observe
	ok := false
	defer func() {
		if !ok {
			sec.Close()
			if obs != nil {
				obs.close()
			}
		}
	}()
	syncer, err := kubesync.New(cs, sec.Store(), kubesync.Config{}, s.log.With("component", "secret-sync"))
	if err != nil {
		return nil, err
	}
	bindings, err := kubesync.NewBindings(syncer, filepath.Join(l.StateDir(), "secret-bindings.json"))
	if err != nil {
		return nil, err
	}

	// Observability (optional).
	var alerting *alertingStack
	if s.cfg.Observability {
		if obs, err = s.newObserve(bdl, netw, certs, cs); err != nil {
			return nil, err
		}
		if alerting, err = s.newAlerting(bdl, obs); err != nil {
			return nil, err
		}
	}
	// Builds, previews, GitOps.
	var buildLogs imagebuild.LogSink
	if obs != nil {
		buildLogs = obs.logs.Client()
	}
	images, err := imagebuild.NewService(imagebuild.ServiceConfig{
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
	}, buildLogs, s.log)
	if err != nil {
		return nil, err
	}
	previews, err := preview.New(preview.Config{
		Dir:      filepath.Join(l.GitOpsDir(), "builds"),
		Branches: s.cfg.PreviewBranches,
		TTL:      s.cfg.PreviewTTL,
	}, images.Index(), s.log)
	if err != nil {
		return nil, err
	}
	platformYAML := gitopsplatform.NewPublisher()
	if alerting != nil {
		platformYAML.Subscribe(alerting.svc.SetUserRules)
	}
	applier, err := apply.New(restCfg)
	if err != nil {
		return nil, err
	}
	eng, err := engine.New(engine.Config{
		Repo:           state.RepoConfig{URL: s.cfg.ConfigRepo, Branch: s.cfg.ConfigRepoBranch, Credentials: s.cfg.ConfigRepoCredentials},
		Dir:            l.GitOpsDir(),
		PollInterval:   s.cfg.PollInterval,
		ResyncInterval: s.cfg.ResyncInterval,
		HealthTimeout:  s.cfg.HealthTimeout,
		Domain:         s.cfg.Domain,
		Registry:       registry.Host,
	}, engine.Deps{
		Applier:     applier,
		Secrets:     sec.Store(),
		SetBindings: bindings.SetGitOps,
		Platform:    platformYAML,
		Images:      images.Index(),
		Previews:    previews,
		Logger:      s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot start the GitOps engine: %w", err)
	}
	follower, err := follow.New(follow.Config{
		Dir:          filepath.Join(l.GitOpsDir(), "builds"),
		Registry:     s.cfg.RegistryAddr,
		PollInterval: s.cfg.PollInterval,
		Domain:       s.cfg.Domain,
	}, follow.Deps{
		Queue:    images.Queue(),
		Previews: previews,
		Platform: platformYAML,
		Engine:   eng,
		Secrets:  sec.Store(),
		Logger:   s.log,
	})
	if err != nil {
		return nil, err
	}

	// The front door, with the Git webhook receiver on every host.
	hook, err := webhook.New(webhook.Dispatch(eng, follower), s.log)
	if err != nil {
		return nil, err
	}
	fd, err := frontdoor.New(frontdoor.Config{
		HTTPAddr:  s.cfg.HTTPAddr,
		HTTPSAddr: s.cfg.HTTPSAddr,
		Client:    cs,
		CertDir:   l.FrontDoorDir(),
		Handlers:  map[string]http.Handler{engine.WebhookPath: hook},
		Logger:    s.log.With("component", "frontdoor"),
	})
	if err != nil {
		return nil, err
	}

	// The console, with VictoriaMetrics' query UI behind its login when observability runs.
	var tools []console.Tool
	if obs != nil {
		tools = append(tools, console.Tool{Prefix: "/metrics/", Title: "Metrics (VictoriaMetrics query UI)", Handler: obs.metrics.UIHandler("/metrics")})
	}
	con, err := newConsole(s.cfg.ConsoleAddr, filepath.Join(l.PKIDir(), "console"), s.cfg.NodeIP, sec.Store(), tools, s.log)
	if err != nil {
		return nil, err
	}

	w := &wiring{reg: reg, sec: sec}
	w.routes = []api.Registrar{reg, sec, bindings, eng, images, previews, follower, fd, con}
	w.children = []interface{ State() supervise.ChildState }{ctrd, clusterDNS, images.Daemon()}
	if obs != nil {
		mc := obs.metrics.Client()
		w.routes = append(w.routes, metrics.NewAPI(mc), logs.NewAPI(obs.logs.Client()), dashboards.NewAPI(mc, eng), alerting.svc)
		w.children = append(w.children, obs.logs, obs.metrics, obs.collector, alerting.am, alerting.vma)
		obs.registry.MustRegister(images.Collector(follower), &glueboxCollector{
			dataDir: l.Root(), engine: eng, registry: reg, secrets: sec, metrics: obs.metrics, logs: obs.logs, logsBudget: s.cfg.LogsDiskBudget,
			certFiles: map[string]string{"cluster-ca": certs.CA.CertFile, "apiserver": certs.APIServer.CertFile, "kubelet-serving": certs.KubeletServing.CertFile},
		})
	}

	// The start order. Registry, secret store and the observability stores need nothing of
	// the node, so they start with the control plane; what talks to the API server or runs
	// pods comes after the kubelet; the front door before the builds and the engine that
	// route traffic to it; the console last.
	c := []supervise.Component{
		ds,
		&kube.APIServer{Certs: certs, Net: netw, Datastore: ds, ExtraArgs: apiArgs, Log: s.log},
		&kube.ControllerManager{Certs: certs, Net: netw, ExtraArgs: cmArgs, Log: s.log},
		&kube.Scheduler{Certs: certs, ExtraArgs: schedArgs, Log: s.log},
		supervise.Func{N: "registry", R: reg.Run, Ready: reg.WaitReady},
		supervise.Func{N: "secrets", R: func(ctx context.Context) error {
			err := sec.Run(ctx)
			if ctx.Err() != nil { // not before: the Group runs a failed Run again
				sec.Close()
			}
			return err
		}, Ready: sec.WaitReady},
	}
	if obs != nil {
		c = append(c, obs.first(s.shipper)...)
		c = append(c, alerting.components(s.cfg.AlertSMTPCredentials, sec.Store(), s.log)...)
	}
	c = append(c,
		ctrd,
		kubelet,
		proxy,
		dnsPublisher(clusterDNS, cs), // RBAC and the Service first, so CoreDNS can list from its first second
		clusterDNS,
		&localpath.Provisioner{Dir: l.StorageDir(), NodeName: netw.NodeName, Client: cs, Log: s.log.With("component", "local-path")},
		supervise.Func{N: "secret-sync", R: syncer.Run}, // needs the API server; stops before the store closes
		fd,
	)
	c = append(c, images.Components()...)
	c = append(c, follower, supervise.Func{N: "gitops", R: eng.Run, Ready: eng.WaitReady})
	if obs != nil {
		c = append(c, obs.last()...)
	}
	c = append(c, supervise.Func{N: "console", R: func(ctx context.Context) error {
		if err := ensureConsolePassword(ctx, sec.Store()); err != nil {
			s.log.Warn("cannot create the console password; logins fail until it exists", "path", ConsolePasswordPath, "err", err)
		}
		return con.Run(ctx)
	}, Ready: con.WaitReady})
	w.components = c
	ok = true
	return w, nil
}

// kubeOverrides parses the users' extra flags of each Kubernetes component, in order.
func kubeOverrides(lists ...[]string) ([]map[string]string, error) {
	out := make([]map[string]string, len(lists))
	for i, kvs := range lists {
		m, err := kube.ParseOverrides(kvs)
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// dnsPublisher creates CoreDNS's RBAC and the kube-dns Service, then waits for the stop.
func dnsPublisher(d *dns.DNS, cs kubernetes.Interface) supervise.Component {
	var ready supervise.Readiness
	return supervise.Func{N: "cluster-dns-service", R: func(ctx context.Context) error {
		defer ready.Clear()
		if err := d.Publish(ctx, cs); err != nil {
			return err
		}
		ready.Set()
		<-ctx.Done()
		return nil
	}, Ready: ready.Wait}
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
