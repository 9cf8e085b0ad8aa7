// Package server is `gluebox server`: it prepares the host and the data dir, then starts every
// component in dependency order (datastore, control plane, containerd, kubelet, kube-proxy,
// cluster DNS, volume provisioner), serves the local API, and on SIGTERM stops them in reverse
// within a bound. Workloads keep running across a stop: containerd's shims outlive it, and the
// next start on the same data dir adopts them. Only the CLI imports it.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	gbembed "github.com/gluebox/gluebox/embed"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/config"
	"github.com/gluebox/gluebox/appliance/hostcheck"
	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/node"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/status"
	"github.com/gluebox/gluebox/appliance/supervise"
	"github.com/gluebox/gluebox/appliance/version"
)

// Server is one running gluebox instance.
type Server struct {
	cfg    config.Server
	layout paths.Layout
	log    *slog.Logger
	// shipper sends the server's log lines to the logs store (nil without observability).
	shipper *logs.Shipper

	mu       sync.Mutex
	phase    string
	started  time.Time
	readyAt  time.Time
	nodeName string
	nodeIP   net.IP
	group    *supervise.Group
	// w is what wire built; set once, before the local API serves.
	w         *wiring
	lastError string
}

// New returns a Server for a validated configuration.
func New(cfg config.Server, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l, err := paths.New(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	srv := &Server{cfg: cfg, layout: l, log: log, phase: "starting", started: time.Now()}
	if cfg.Observability {
		// gluebox's own lines go to the logs store too, once it runs (buffered until then).
		srv.shipper = logs.NewShipper(log.Handler(), 0)
		srv.log = slog.New(srv.shipper)
	}
	return srv, nil
}

// Run boots the instance and serves until ctx ends, then stops everything it started. It
// returns an error if the boot fails (after undoing what it started) or a component dies.
func (s *Server) Run(ctx context.Context) (err error) {
	l := s.layout
	if os.Getenv("GOGC") == "" {
		// The in-process control plane keeps large, long-lived caches; collecting at 50 %
		// growth instead of 100 % keeps ~30 MB off the idle footprint (make bench: idle RSS)
		// for a little CPU. GOGC in the environment still wins.
		debug.SetGCPercent(50)
	}
	if os.Geteuid() != 0 {
		return errors.New("gluebox server must run as root (it manages containers, mounts and iptables): run it with sudo or as the gluebox systemd service")
	}
	if err := prepareDataDir(l); err != nil {
		return err
	}
	unlock, err := LockDataDir(l)
	if err != nil {
		return err
	}
	defer unlock()

	report := hostcheck.Run(hostcheck.Options{Ports: s.ports(), DataDir: l.Root()})
	if err := report.Err(); err != nil {
		return err
	}

	logFile, err := supervise.OpenLog(filepath.Join(l.LogDir(), "kubernetes.log"), supervise.LogRotation{})
	if err != nil {
		return fmt.Errorf("cannot open kubernetes log: %w", err)
	}
	defer logFile.Close()
	redirectKlog(logFile)
	registry.RouteDistributionLogs(s.log)

	marker := l.Join("run", "unclean-shutdown")
	if _, err := os.Stat(marker); err == nil {
		s.log.Warn("the previous run did not shut down cleanly; adopting what it left running")
	}
	_ = os.WriteFile(marker, []byte(time.Now().Format(time.RFC3339)), 0o644)

	bdl, err := bundle.Extract(l.Join("bin"), gbembed.Bundle(), gbembed.BundleSHA256())
	if err != nil {
		return fmt.Errorf("cannot extract helper programs: %w", err)
	}
	// A first start read all ~70 MB of the embedded bundle; nothing reads it again.
	if err := gbembed.ReleaseBundle(); err != nil {
		s.log.Warn("the embedded bundle's memory stays mapped", "error", err)
	}
	if err := prepareHost(s.log); err != nil {
		return err
	}

	netw, err := s.network()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.nodeName, s.nodeIP = netw.NodeName, netw.NodeIP
	s.mu.Unlock()
	certs, err := kube.EnsureCerts(l, netw)
	if err != nil {
		return fmt.Errorf("cannot prepare certificates: %w", err)
	}
	if err := node.WriteCNIConfig(l, netw.ClusterCIDR); err != nil {
		return fmt.Errorf("cannot write CNI config: %w", err)
	}

	w, err := s.wire(bdl, netw, certs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Serve(apiCtx, l.Socket(), s.Handler()) }()
	defer func() { stopAPI(); <-apiDone }()
	g := supervise.NewGroup(s.log, supervise.GroupConfig{ReadyTimeout: 3 * time.Minute, StopTimeout: s.cfg.ShutdownTimeout})
	s.mu.Lock()
	s.group = g
	s.mu.Unlock()
	stopAll := func() {
		s.setPhase("stopping")
		started := time.Now()
		if err := g.Stop(); err != nil {
			s.log.Warn("components reported errors while stopping", "err", err)
		}
		s.log.Info("stopped", "took", time.Since(started).Round(time.Millisecond))
	}
	for _, c := range w.components {
		if err := g.Start(ctx, c); err != nil {
			s.setError(err)
			stopAll()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	cs, err := kube.ClientFromKubeconfig(certs.SupervisorKubecfg)
	if err != nil {
		stopAll()
		return err
	}
	readyCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	err = node.WaitNodeReady(readyCtx, cs, netw.NodeName)
	if err == nil {
		// "ready" means a user can create pods: the default ServiceAccount, which admission
		// requires, is made by the controller-manager shortly after it starts.
		err = waitDefaultServiceAccount(readyCtx, cs)
	}
	cancel()
	if err != nil {
		stopAll()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	s.mu.Lock()
	s.phase, s.readyAt = "ready", time.Now()
	s.mu.Unlock()
	s.log.Info("node ready", "node", netw.NodeName, "ip", netw.NodeIP, "took", time.Since(s.started).Round(time.Millisecond),
		"kubeconfig", l.KubeconfigAdmin())

	select {
	case <-ctx.Done():
		stopAll()
		_ = os.Remove(marker)
		return nil
	case err := <-g.Failed():
		s.setError(err)
		s.log.Error("a component failed; stopping", "err", err)
		stopAll()
		_ = os.Remove(marker)
		return err
	}
}

func (s *Server) network() (kube.ClusterNetwork, error) {
	n := kube.ClusterNetwork{APIPort: s.cfg.APIPort, ServiceCIDR: s.cfg.ServiceCIDR, ClusterCIDR: s.cfg.ClusterCIDR, NodeName: s.cfg.NodeName}
	n.Defaults()
	if n.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return n, fmt.Errorf("cannot read host name: %w (pass --node-name)", err)
		}
		n.NodeName = strings.ToLower(h)
	}
	if s.cfg.NodeIP != "" {
		n.NodeIP = net.ParseIP(s.cfg.NodeIP).To4()
	} else {
		ip, err := node.DetectNodeIP()
		if err != nil {
			return n, err
		}
		n.NodeIP = ip
	}
	return n, nil
}

// ports lists the TCP ports this instance must be able to bind.
func (s *Server) ports() []hostcheck.Port {
	return []hostcheck.Port{
		{Addr: fmt.Sprintf(":%d", s.cfg.APIPort), Flag: "--api-port", Why: "Kubernetes API"},
		{Addr: "127.0.0.1:10257", Why: "kube-controller-manager"},
		{Addr: "127.0.0.1:10259", Why: "kube-scheduler"},
		{Addr: ":10250", Why: "kubelet"},
		{Addr: "127.0.0.1:10248", Why: "kubelet healthz"},
		{Addr: "127.0.0.1:10256", Why: "kube-proxy healthz"},
		{Addr: "127.0.0.1:10249", Why: "kube-proxy metrics"},
		{Addr: s.cfg.RegistryAddr, Flag: "--registry-addr", Why: "OCI registry"},
		{Addr: s.cfg.ConsoleAddr, Flag: "--console-addr", Why: "web console"},
	}
}

func (s *Server) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *Server) setError(err error) {
	s.mu.Lock()
	s.lastError = err.Error()
	s.mu.Unlock()
}

// Status is what `gluebox status` prints (its type lives in appliance/status, with its route,
// so the typed client need not import the server).
type Status = status.Status

// Handler is the local API of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	status.Route.Register(mux, func(w http.ResponseWriter, r *http.Request) {
		st := s.Status()
		s.mu.Lock()
		wired := s.w
		s.mu.Unlock()
		if wired != nil {
			if rs, err := wired.reg.Status(r.Context()); err == nil {
				st.Registry = &rs
			}
			ss := wired.sec.Status()
			st.Secrets = &ss
		}
		api.WriteJSON(w, http.StatusOK, st)
	})
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	if w != nil {
		for _, o := range w.routes {
			o.Register(mux)
		}
	}
	return mux
}

// Status returns the instance's current status.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Phase: s.phase, Node: s.nodeName, DataDir: s.layout.Root(), Uptime: time.Since(s.started).Round(time.Second).String(),
		Versions: version.Info(), Kubeconfig: s.layout.KubeconfigAdmin(), LastError: s.lastError,
		APIServer: fmt.Sprintf("https://127.0.0.1:%d", s.cfg.APIPort),
	}
	if s.nodeIP != nil {
		st.NodeIP = s.nodeIP.String()
	}
	if !s.readyAt.IsZero() {
		st.BootTime = s.readyAt.Sub(s.started).Round(time.Millisecond).String()
	}
	if s.group != nil {
		st.Components = s.group.States()
		if st.Phase == "ready" && slices.ContainsFunc(st.Components, supervise.State.Degraded) {
			st.Phase = "degraded" // serving, with a non-critical component being restarted
		}
	}
	if s.w == nil {
		return st
	}
	for _, c := range s.w.children {
		st.Children = append(st.Children, c.State())
	}
	return st
}

// registryMirrors points containerd at the built-in registry for its own address and the
// short alias registry.Host.
func registryMirrors(addr string) map[string]string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ep := "http://" + net.JoinHostPort(host, port)
	return map[string]string{net.JoinHostPort(host, port): ep, registry.Host: ep}
}

// hostResolvConf returns the resolver file with real upstream servers (systemd-resolved's
// stub at 127.0.0.53 is useless inside pods).
func hostResolvConf() string {
	const resolved = "/run/systemd/resolve/resolv.conf"
	if _, err := os.Stat(resolved); err == nil {
		return resolved
	}
	return "/etc/resolv.conf"
}

func prepareDataDir(l paths.Layout) error {
	for _, d := range []string{l.Root(), l.RunDir(), l.LogDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("cannot create data dir %s: %w (pick a writable --data-dir)", d, err)
		}
	}
	probe := l.Join(".write-test")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		return fmt.Errorf("data dir %s is not writable: %w (pick a writable --data-dir)", l.Root(), err)
	}
	return os.Remove(probe)
}

// LockDataDir takes the instance lock of a data dir, so two servers (or a server and a
// cleanup) never work on one data dir at once.
func LockDataDir(l paths.Layout) (func(), error) {
	f, err := os.OpenFile(l.Join("gluebox.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another gluebox is using data dir %s (stop it first, e.g. `systemctl stop gluebox`)", l.Root())
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// prepareHost sets the kernel switches pods need in this network namespace.
func prepareHost(log *slog.Logger) error {
	for path, val := range map[string]string{
		"/proc/sys/net/ipv4/ip_forward":                 "1",
		"/proc/sys/net/bridge/bridge-nf-call-iptables":  "1",
		"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "1",
		"/proc/sys/net/ipv4/conf/all/route_localnet":    "1",
	} {
		if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
			if path == "/proc/sys/net/ipv4/ip_forward" {
				return fmt.Errorf("cannot enable IP forwarding (%s): %w", path, err)
			}
			log.Warn("cannot set kernel switch", "path", path, "err", err)
		}
	}
	return nil
}

// redirectKlog sends the Kubernetes components' logs to w instead of gluebox's stderr.
func redirectKlog(w io.Writer) { kube.RedirectKlog(w) }

func waitDefaultServiceAccount(ctx context.Context, cs kubernetes.Interface) error {
	for {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the default ServiceAccount was not created in time: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
