package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"

	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// ProxyConfig is what the in-process kube-proxy is configured with.
type ProxyConfig struct {
	Layout    paths.Layout
	Certs     *kube.Certs
	Net       kube.ClusterNetwork
	ExtraArgs map[string]string
}

// Proxy runs kube-proxy (iptables mode) in-process.
type Proxy struct {
	cfg ProxyConfig
	log *slog.Logger
}

// NewProxy writes kube-proxy's configuration file and returns the component.
func NewProxy(cfg ProxyConfig, log *slog.Logger) (*Proxy, error) {
	p := &Proxy{cfg: cfg, log: log}
	if err := os.WriteFile(p.configPath(), []byte(RenderProxyConfig(cfg)), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write kube-proxy config: %w", err)
	}
	return p, nil
}

func (p *Proxy) configPath() string { return p.cfg.Layout.Join("kube-proxy-config.yaml") }

// Name implements supervise.Component.
func (p *Proxy) Name() string { return "kube-proxy" }

// RenderProxyConfig returns the KubeProxyConfiguration file for cfg. Conntrack sysctls are
// left alone (maxPerCore 0) because they are not writable in every network namespace.
func RenderProxyConfig(cfg ProxyConfig) string {
	return fmt.Sprintf(`# Written by gluebox at every start.
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %q
hostnameOverride: %s
clusterCIDR: %s
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [primary]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
`, cfg.Certs.ProxyKubecfg, cfg.Net.NodeName, cfg.Net.ClusterCIDR)
}

// Run implements supervise.Component.
func (p *Proxy) Run(ctx context.Context) error {
	o := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	o.AddFlags(fs)
	if err := fs.Parse(kube.Args(map[string]string{"config": p.configPath()}, p.cfg.ExtraArgs)); err != nil {
		return fmt.Errorf("kube-proxy: invalid argument: %w", err)
	}
	if err := o.Complete(fs); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("kube-proxy: invalid configuration: %w", err)
	}
	// Options.Run does not return when its context ends (it keeps waiting for errors), so it
	// runs on its own and this returns on cancel.
	errc := make(chan error, 1)
	go func() { errc <- o.Run(ctx) }()
	select {
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kube-proxy: %w", err)
	case <-ctx.Done():
		return nil
	}
}

// WaitReady implements supervise.Component.
func (p *Proxy) WaitReady(ctx context.Context) error {
	return supervise.PollHTTP(ctx, "http://127.0.0.1:10256/livez", false)
}
