package node

import (
	"context"
	"fmt"
	cadvisorcontainerd "github.com/google/cadvisor/lib/container/containerd"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	cliflag "k8s.io/component-base/cli/flag"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
	"k8s.io/kubernetes/pkg/kubelet/eviction"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"

	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// KubeletConfig is what the in-process kubelet is configured with.
type KubeletConfig struct {
	Layout paths.Layout
	Certs  *kube.Certs
	Net    kube.ClusterNetwork
	// CgroupV1 is true on hosts without the unified hierarchy; the kubelet then needs
	// failCgroupV1: false.
	CgroupV1 bool
	// ResolvConf is the resolver file pods inherit for upstream names.
	ResolvConf string
	// CgroupRoot is the cgroup under which all pods of this instance live, so cleanup can find
	// every container process (default /gluebox).
	CgroupRoot string
	// ExtraArgs override or remove gluebox's kubelet flags.
	ExtraArgs map[string]string
}

// Kubelet runs the kubelet in-process.
type Kubelet struct {
	cfg KubeletConfig
	log *slog.Logger
}

// NewKubelet writes the kubelet's configuration file and returns the component.
func NewKubelet(cfg KubeletConfig, log *slog.Logger) (*Kubelet, error) {
	k := &Kubelet{cfg: cfg, log: log}
	if _, err := cfg.Net.ServiceIP(10); err != nil {
		return nil, fmt.Errorf("kubelet: cannot derive the cluster DNS address: %w", err)
	}
	if err := os.MkdirAll(cfg.Layout.KubeletRoot(), 0o755); err != nil {
		return nil, err
	}
	if cfg.CgroupRoot == "" {
		cfg.CgroupRoot = "/gluebox"
		k.cfg.CgroupRoot = cfg.CgroupRoot
	}
	if err := EnsureCgroupRoot(cfg.CgroupRoot, cfg.CgroupV1); err != nil {
		return nil, err
	}
	if err := os.WriteFile(k.configPath(), []byte(RenderKubeletConfig(cfg)), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write kubelet config: %w", err)
	}
	return k, nil
}

func (k *Kubelet) configPath() string { return k.cfg.Layout.Join("kubelet-config.yaml") }

// Name implements supervise.Component.
func (k *Kubelet) Name() string { return "kubelet" }

// Critical implements supervise.Critical: without it the node is not a node, so its
// failure ends the process.
func (k *Kubelet) Critical() bool { return true }

// RenderKubeletConfig returns the KubeletConfiguration file for cfg.
func RenderKubeletConfig(cfg KubeletConfig) string {
	dnsIP, _ := cfg.Net.ServiceIP(10)
	resolv := cfg.ResolvConf
	if resolv == "" {
		resolv = "/etc/resolv.conf"
	}
	cgroupRoot := cfg.CgroupRoot
	if cgroupRoot == "" {
		cgroupRoot = "/gluebox"
	}
	failV1 := "true"
	if cfg.CgroupV1 {
		failV1 = "false"
	}
	return fmt.Sprintf(`# Written by gluebox at every start.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 2m}
  x509: {clientCAFile: %[2]q}
authorization:
  mode: Webhook
clusterDomain: cluster.local
clusterDNS: [%[3]s]
resolvConf: %[4]q
tlsCertFile: %[5]q
tlsPrivateKeyFile: %[6]q
containerRuntimeEndpoint: unix://%[7]s
cgroupDriver: cgroupfs
cgroupRoot: %[9]s
cgroupsPerQOS: true
failCgroupV1: %[8]s
failSwapOn: false
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
makeIPTablesUtilChains: true
evictionHard:
  memory.available: 100Mi
  nodefs.available: 5%%
  imagefs.available: 5%%
evictionPressureTransitionPeriod: 30s
imageGCHighThresholdPercent: 90
imageGCLowThresholdPercent: 80
nodeStatusReportFrequency: 1m
nodeStatusUpdateFrequency: 10s
syncFrequency: 30s
fileCheckFrequency: 20s
shutdownGracePeriod: 0s
`, cfg.Net.NodeIP, cfg.Certs.CA.CertFile, dnsIP, resolv, cfg.Certs.KubeletServing.CertFile, cfg.Certs.KubeletServing.KeyFile,
		cfg.Layout.ContainerdSocket(), failV1, cgroupRoot)
}

// DefaultArgs returns the kubelet flags that are not part of its configuration file.
func (k *Kubelet) DefaultArgs() map[string]string {
	return map[string]string{
		"config":            k.configPath(),
		"kubeconfig":        k.cfg.Certs.KubeletKubecfg,
		"hostname-override": k.cfg.Net.NodeName,
		"node-ip":           k.cfg.Net.NodeIP.String(),
		"root-dir":          k.cfg.Layout.KubeletRoot(),
		"cert-dir":          filepath.Join(k.cfg.Layout.KubeletRoot(), "pki"),
		"node-labels":       "node.gluebox.dev/role=server",
	}
}

// Run implements supervise.Component. It mirrors the upstream kubelet command without its
// process-wide signal handling.
func (k *Kubelet) Run(ctx context.Context) error {
	// cAdvisor (inside the kubelet) learns container names from containerd through a
	// package-level flag of its own, not the kubelet's configuration; without it, per-container
	// metrics (container_cpu_usage_seconds_total{container=...}) are missing. The upstream
	// kubelet command sets it from --containerd; we run one kubelet per process, so setting the
	// variable is safe.
	*cadvisorcontainerd.ArgContainerdEndpoint = k.cfg.Layout.ContainerdSocket()
	fs := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	flags := kubeletoptions.NewKubeletFlags()
	kc, err := kubeletoptions.NewKubeletConfiguration()
	if err != nil {
		return err
	}
	flags.AddFlags(fs)
	kubeletoptions.AddKubeletConfigFlags(fs, kc)
	args := kube.Args(k.DefaultArgs(), k.cfg.ExtraArgs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kubelet: invalid argument: %w", err)
	}
	if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
		return fmt.Errorf("kubelet: invalid flags: %w", err)
	}
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, flags.KubeletConfigFile)
	if err != nil {
		return fmt.Errorf("kubelet: cannot load %s: %w", flags.KubeletConfigFile, err)
	}
	kc, err = loader.Load(ctx)
	if err != nil {
		return fmt.Errorf("kubelet: cannot load %s: %w", flags.KubeletConfigFile, err)
	}
	if kc.EvictionHard == nil {
		kc.EvictionHard = eviction.DefaultEvictionHard
	}
	// Flags given on top of the file win, as upstream: parse them again into the loaded config.
	fs2 := pflag.NewFlagSet("kubelet", pflag.ContinueOnError)
	fs2.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	kubeletoptions.NewKubeletFlags().AddFlags(fs2)
	kubeletoptions.AddKubeletConfigFlags(fs2, kc)
	if err := fs2.Parse(args); err != nil {
		return fmt.Errorf("kubelet: invalid argument: %w", err)
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kc.FeatureGates); err != nil {
		return fmt.Errorf("kubelet: feature gates: %w", err)
	}
	if err := kubeletvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("kubelet: invalid configuration: %w", err)
	}
	server := &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	deps, err := kubeletapp.UnsecuredDependencies(ctx, server, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	if err := kubeletapp.Run(ctx, server, deps, utilfeature.DefaultFeatureGate); err != nil && ctx.Err() == nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// WaitReady implements supervise.Component: the kubelet's healthz answers.
func (k *Kubelet) WaitReady(ctx context.Context) error {
	return supervise.PollHTTP(ctx, "http://127.0.0.1:10248/healthz", false)
}

// WaitNodeReady waits until the node object reports Ready.
func WaitNodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	var last string
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == v1.NodeReady {
					if c.Status == v1.ConditionTrue {
						return nil
					}
					last = c.Reason + ": " + c.Message
				}
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not Ready: %s", name, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// DetectNodeIP returns the IPv4 address of the interface that holds the default route, or else
// the first global IPv4 address of any interface that is up.
func DetectNodeIP() (net.IP, error) {
	if ip := defaultRouteIP(); ip != nil {
		return ip, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, iface := range ifs {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.To4(), nil
			}
		}
	}
	return nil, fmt.Errorf("no IPv4 address found on any interface: pass --node-ip")
}

func defaultRouteIP() net.IP {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		iface, err := net.InterfaceByName(f[0])
		if err != nil {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.To4()
			}
		}
	}
	return nil
}
