package kube

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// APIServer runs kube-apiserver in-process.
type APIServer struct {
	Certs     *Certs
	Net       ClusterNetwork
	Datastore *Datastore
	// BindAddress is where the secure port listens (default 0.0.0.0).
	BindAddress string
	// ExtraArgs override or remove (empty value) gluebox's defaults.
	ExtraArgs map[string]string
	Log       *slog.Logger
}

// Name implements supervise.Component.
func (a *APIServer) Name() string { return "kube-apiserver" }

// Critical implements supervise.Critical: without it the node is not a node, so its
// failure ends the process.
func (a *APIServer) Critical() bool { return true }

// DefaultArgs returns gluebox's apiserver flags before user overrides.
func (a *APIServer) DefaultArgs() map[string]string {
	c := a.Certs
	bind := a.BindAddress
	if bind == "" {
		bind = "0.0.0.0"
	}
	etcd := strings.Join(a.Datastore.Endpoints(), ",")
	return map[string]string{
		"advertise-address":                       a.Net.NodeIP.String(),
		"allow-privileged":                        "true",
		"anonymous-auth":                          "false",
		"api-audiences":                           "https://kubernetes.default.svc.cluster.local",
		"authorization-mode":                      "Node,RBAC",
		"bind-address":                            bind,
		"secure-port":                             strconv.Itoa(a.Net.APIPort),
		"client-ca-file":                          c.CA.CertFile,
		"enable-admission-plugins":                "NodeRestriction",
		"encryption-provider-config":              c.EncryptionConfig,
		"etcd-servers":                            etcd,
		"kubelet-client-certificate":              c.APIServerKubelet.CertFile,
		"kubelet-client-key":                      c.APIServerKubelet.KeyFile,
		"kubelet-certificate-authority":           c.CA.CertFile,
		"kubelet-preferred-address-types":         "InternalIP,Hostname",
		"profiling":                               "false",
		"service-account-issuer":                  "https://kubernetes.default.svc.cluster.local",
		"service-account-key-file":                c.ServiceAccountPub,
		"service-account-signing-key-file":        c.ServiceAccountKey,
		"service-cluster-ip-range":                a.Net.ServiceCIDR,
		"service-node-port-range":                 "30000-32767",
		"storage-backend":                         "etcd3",
		"tls-cert-file":                           c.APIServer.CertFile,
		"tls-private-key-file":                    c.APIServer.KeyFile,
		"shutdown-delay-duration":                 "0s",
		"shutdown-watch-termination-grace-period": "0s",
		"endpoint-reconciler-type":                "lease",
		"event-ttl":                               "1h",
	}
}

// StopTimeout bounds the apiserver's graceful stop. It would otherwise wait for in-flight
// requests up to --request-timeout (1m): the in-process kubelet leaves a few loops running after
// its Run returns, and their requests keep the drain busy. Everything the apiserver accepted is
// already durable in the datastore, so after 10s the stop goes on without it.
func (a *APIServer) StopTimeout() time.Duration { return 10 * time.Second }

// Run implements supervise.Component.
func (a *APIServer) Run(ctx context.Context) error {
	s := apioptions.NewServerRunOptions()
	args := Args(a.DefaultArgs(), a.ExtraArgs)
	if err := parseInto("kube-apiserver", s.Flags(), args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver: cannot set feature gates: %w", err)
	}
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver: invalid options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver: invalid options: %v", errs)
	}
	if err := apiapp.Run(ctx, completed); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// WaitReady implements supervise.Component: the apiserver is ready when /readyz says so.
func (a *APIServer) WaitReady(ctx context.Context) error {
	cs, err := ClientFromKubeconfig(a.Certs.SupervisorKubecfg)
	if err != nil {
		return err
	}
	var last error
	for {
		var code int
		res := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&code)
		if res.Error() == nil && code == 200 {
			return nil
		}
		last = res.Error()
		select {
		case <-ctx.Done():
			return fmt.Errorf("apiserver not ready: %v", last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ClientFromKubeconfig returns a clientset for the kubeconfig at path.
func ClientFromKubeconfig(path string) (*kubernetes.Clientset, error) {
	cfg, err := RESTConfig(path)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// RESTConfig loads a client config from the kubeconfig at path.
func RESTConfig(path string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("cannot load kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	return cfg, nil
}
