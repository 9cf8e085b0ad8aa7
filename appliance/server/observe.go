package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"

	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/kubestate"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// observe is the observability stack: VictoriaLogs (store), VictoriaMetrics (store and
// scraper), vlagent (container log collector), kube-state metrics and gluebox's own metrics
// endpoint, whose registry the wiring adds the components' collectors to.
type observe struct {
	metrics   *metrics.Metrics
	logs      *logs.Logs
	collector *logs.Collector
	kubeState *kubestate.Exporter
	selfL     net.Listener
	registry  *prometheus.Registry
}

// newObserve prepares the stack; nothing runs until its components start. On success the
// caller owns the metrics listener (close it if the wiring fails later).
func (s *Server) newObserve(bdl bundle.Dir, netw kube.ClusterNetwork, certs *kube.Certs, cs kubernetes.Interface) (*observe, error) {
	l := s.layout
	// gluebox's own metrics listen on a loopback port picked now, so the scrape config can name it.
	selfL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot open gluebox's metrics listener: %w", err)
	}
	o := &observe{selfL: selfL, registry: prometheus.NewRegistry()}
	fail := func(err error) (*observe, error) {
		selfL.Close()
		return nil, err
	}
	// Each program has its own CPU limit; together they get --observability-cpu-limit, so
	// their limits (3.5 cores in all) cannot take a small host from the node and its pods.
	if err := supervise.LimitCgroupCPU(s.childCgroup(), s.cfg.ObservabilityCPULimit); err != nil {
		return fail(fmt.Errorf("cannot limit the observability programs to %v cores together (--observability-cpu-limit, 0 for no limit): %w", s.cfg.ObservabilityCPULimit, err))
	}
	o.logs, err = logs.New(logs.Config{
		Binary: bdl.Bin("victoria-logs"), Dir: l.LogsDir(), LogFile: filepath.Join(l.LogDir(), "victoria-logs.log"),
		Retention: s.cfg.LogsRetention, DiskBudget: s.cfg.LogsDiskBudget,
		MemoryBytes: s.cfg.LogsMemoryLimit / 2, Limits: s.childLimits(s.cfg.LogsMemoryLimit, "--logs-memory-limit", logs.DefaultCPUs),
	}, s.log.With("component", "victoria-logs"))
	if err != nil {
		return fail(err)
	}
	o.metrics, err = metrics.New(metrics.Config{
		Binary: bdl.Bin("victoria-metrics"), Dir: l.MetricsDir(), LogFile: filepath.Join(l.LogDir(), "victoria-metrics.log"),
		Retention: s.cfg.MetricsRetention, DiskBudget: s.cfg.MetricsDiskBudget,
		MemoryBytes: s.cfg.MetricsMemoryLimit / 2, Limits: s.childLimits(s.cfg.MetricsMemoryLimit, "--metrics-memory-limit", metrics.DefaultCPUs),
		Targets: metrics.Targets{
			Kubelet:    net.JoinHostPort(netw.NodeIP.String(), "10250"),
			NodeName:   netw.NodeName,
			APIServer:  net.JoinHostPort("127.0.0.1", fmt.Sprint(netw.APIPort)),
			CAFile:     certs.CA.CertFile,
			CertFile:   certs.APIServerKubelet.CertFile,
			KeyFile:    certs.APIServerKubelet.KeyFile,
			Gluebox:    "http://" + selfL.Addr().String() + "/metrics",
			Kubeconfig: certs.SupervisorKubecfg,
			Extra: []metrics.Target{
				{Job: "victoria-logs", URL: o.logs.URL() + "/metrics"},
			},
		},
	}, s.log.With("component", "victoria-metrics"))
	if err != nil {
		return fail(err)
	}
	o.collector, err = logs.NewCollector(logs.CollectorConfig{
		Binary: bdl.Bin("vlagent"), Dir: l.Join("logs-collector"), LogFile: filepath.Join(l.LogDir(), "vlagent.log"),
		Kubeconfig: certs.SupervisorKubecfg, StoreURL: o.logs.InsertURL(),
		MemoryBytes: min(logs.DefaultCollectorMemoryBytes, s.cfg.LogCollectorMemoryLimit/2),
		Limits:      s.childLimits(s.cfg.LogCollectorMemoryLimit, "--log-collector-memory-limit", logs.DefaultCollectorCPULimit),
	}, s.log.With("component", "vlagent"))
	if err != nil {
		return fail(err)
	}
	o.kubeState, err = kubestate.New(kubestate.Config{Client: cs}, s.log.With("component", "kubestate"))
	if err != nil {
		return fail(err)
	}
	o.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), o.kubeState.Collector())
	return o, nil
}

// close releases what newObserve took before anything ran.
func (o *observe) close() { o.selfL.Close() }

// first are the stack's components that start with the control plane: gluebox's metrics
// endpoint, the stores, and (with shipper) gluebox's own log lines into the logs store.
func (o *observe) first(shipper *logs.Shipper) []supervise.Component {
	self := supervise.Func{N: "gluebox-metrics", R: func(ctx context.Context) error {
		srv := &http.Server{Handler: promhttp.HandlerFor(o.registry, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.Serve(o.selfL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}}
	c := []supervise.Component{self, o.logs, o.metrics}
	if shipper != nil {
		c = append(c, supervise.Func{N: "log-shipper", R: func(ctx context.Context) error {
			return shipper.Run(ctx, o.logs.Client(), time.Second)
		}})
	}
	return c
}

// last are the stack's components that need the API server and pods: kube-state metrics and
// the container log collector.
func (o *observe) last() []supervise.Component {
	return []supervise.Component{
		supervise.Func{N: "kube-state-metrics", R: o.kubeState.Run, Ready: o.kubeState.WaitReady},
		o.collector,
	}
}

// childCgroup is where the observability children get cgroups of their own with hard limits:
// <cgroup root>/children, beside the kubelet's pods (<cgroup root>/kubepods), not inside them.
func (s *Server) childCgroup() string { return s.layout.CgroupRoot() + "/children" }

// childLimits returns the hard limits of an observability program under childCgroup: a memory
// limit of limit bytes (0: none), named by flag in the warning an OOM kill logs, and cpu cores,
// the program's own CPU limit, but no more than all of them may use together
// (--observability-cpu-limit; on cgroup v1 the kernel refuses a child more than its parent).
func (s *Server) childLimits(limit int64, flag string, cpu float64) supervise.Limits {
	l := supervise.Limits{CgroupParent: s.childCgroup(), MemoryBytes: limit, MemoryFlag: flag, CPU: cpu}
	if limit == 0 {
		l.MemoryBytes = -1 // none
	}
	if total := s.cfg.ObservabilityCPULimit; total > 0 {
		l.CPU = min(cpu, total)
	}
	return l
}

// glueboxCollector exports gluebox's own state at scrape time: disk use of the data dir,
// GitOps environments, registry size, backups and certificate expiry. The default alert rules
// are written against these names.
type glueboxCollector struct {
	dataDir    string
	certFiles  map[string]string
	engine     *engine.Engine
	registry   *registry.Registry
	secrets    *secrets.Service
	metrics    *metrics.Metrics
	logs       *logs.Logs
	logsBudget int64
}

var (
	descDiskUsed     = prometheus.NewDesc("gluebox_disk_used_bytes", "Bytes used on the file system of the data dir.", []string{"mount"}, nil)
	descDiskTotal    = prometheus.NewDesc("gluebox_disk_total_bytes", "Size of the file system of the data dir.", []string{"mount"}, nil)
	descEnvError     = prometheus.NewDesc("gluebox_gitops_env_error", "1 when the last sync of an environment failed.", []string{"app", "env"}, nil)
	descEnvHealthy   = prometheus.NewDesc("gluebox_gitops_env_healthy", "1 when an environment is healthy.", []string{"app", "env"}, nil)
	descEnvHeld      = prometheus.NewDesc("gluebox_gitops_env_held", "1 when an environment is held by a rollback.", []string{"app", "env"}, nil)
	descEnvApplied   = prometheus.NewDesc("gluebox_gitops_env_last_applied_timestamp_seconds", "When an environment was last applied (deploy annotations).", []string{"app", "env", "commit"}, nil)
	descRepoError    = prometheus.NewDesc("gluebox_gitops_repo_error", "1 when the last check or sync of the deployment-configurations repository failed.", nil, nil)
	descRegistry     = prometheus.NewDesc("gluebox_registry_disk_bytes", "Bytes the built-in registry stores.", nil, nil)
	descBackup       = prometheus.NewDesc("gluebox_backup_last_verified_timestamp_seconds", "When the newest verified secret-store backup was made.", nil, nil)
	descObsRetention = prometheus.NewDesc("gluebox_observability_retention_seconds", "How long a store keeps data: configured, and effective (shorter while the disk budget needs it).", []string{"store", "kind"}, nil)
	descObsDisk      = prometheus.NewDesc("gluebox_observability_disk_bytes", "Bytes a store's data takes on disk.", []string{"store"}, nil)
	descObsBudget    = prometheus.NewDesc("gluebox_observability_disk_budget_bytes", "A store's disk budget (0: none).", []string{"store"}, nil)
	descCertExpiry   = prometheus.NewDesc("gluebox_cert_expiry_timestamp_seconds", "When a certificate gluebox issued expires.", []string{"name"}, nil)
)

func (c *glueboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDiskUsed, descDiskTotal, descEnvError, descEnvHealthy, descEnvHeld, descEnvApplied, descRepoError, descRegistry, descBackup, descCertExpiry, descObsRetention, descObsDisk, descObsBudget} {
		ch <- d
	}
}

func (c *glueboxCollector) Collect(ch chan<- prometheus.Metric) {
	var st unix.Statfs_t
	if err := unix.Statfs(c.dataDir, &st); err == nil {
		total := float64(st.Blocks) * float64(st.Bsize)
		ch <- prometheus.MustNewConstMetric(descDiskTotal, prometheus.GaugeValue, total, "data")
		ch <- prometheus.MustNewConstMetric(descDiskUsed, prometheus.GaugeValue, total-float64(st.Bfree)*float64(st.Bsize), "data")
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if eng := c.engine; eng != nil {
		if envs, err := eng.Envs(); err == nil {
			for _, e := range envs {
				ch <- prometheus.MustNewConstMetric(descEnvError, prometheus.GaugeValue, b(e.LastError != ""), e.App, e.Env)
				ch <- prometheus.MustNewConstMetric(descEnvHealthy, prometheus.GaugeValue, b(e.Health == state.HealthHealthy), e.App, e.Env)
				ch <- prometheus.MustNewConstMetric(descEnvHeld, prometheus.GaugeValue, b(e.Held), e.App, e.Env)
				if !e.LastAppliedAt.IsZero() {
					ch <- prometheus.MustNewConstMetric(descEnvApplied, prometheus.GaugeValue, float64(e.LastAppliedAt.Unix()), e.App, e.Env, e.Commit)
				}
			}
		}
		if v, err := eng.Repo(); err == nil && v.Config.URL != "" {
			ch <- prometheus.MustNewConstMetric(descRepoError, prometheus.GaugeValue, b(v.Status.LastError != ""))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if rs, err := c.registry.Status(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(descRegistry, prometheus.GaugeValue, float64(rs.StorageBytes))
	}
	if ss := c.secrets.Status(); !ss.NewestVerified.IsZero() {
		ch <- prometheus.MustNewConstMetric(descBackup, prometheus.GaugeValue, float64(ss.NewestVerified.Unix()))
	}
	for name, f := range c.certFiles {
		if t, err := certExpiry(f); err == nil {
			ch <- prometheus.MustNewConstMetric(descCertExpiry, prometheus.GaugeValue, float64(t.Unix()), name)
		}
	}
	if m := c.metrics; m != nil {
		ret, budget := m.Budget()
		ch <- prometheus.MustNewConstMetric(descObsRetention, prometheus.GaugeValue, ret.Seconds(), "metrics", "configured")
		ch <- prometheus.MustNewConstMetric(descObsRetention, prometheus.GaugeValue, m.EffectiveRetention().Seconds(), "metrics", "effective")
		ch <- prometheus.MustNewConstMetric(descObsBudget, prometheus.GaugeValue, float64(budget), "metrics")
		if used, err := m.DiskUsage(); err == nil {
			ch <- prometheus.MustNewConstMetric(descObsDisk, prometheus.GaugeValue, float64(used), "metrics")
		}
	}
	if lg := c.logs; lg != nil {
		ch <- prometheus.MustNewConstMetric(descObsBudget, prometheus.GaugeValue, float64(c.logsBudget), "logs")
		if used, err := lg.DiskUsage(); err == nil {
			ch <- prometheus.MustNewConstMetric(descObsDisk, prometheus.GaugeValue, float64(used), "logs")
		}
	}
}

func certExpiry(file string) (time.Time, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return time.Time{}, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return time.Time{}, fmt.Errorf("%s: no PEM block", file)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}
