package kube

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/rest"
	cmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	cmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/gluebox/gluebox/appliance/supervise"
)

// ControllerManager runs kube-controller-manager in-process.
type ControllerManager struct {
	Certs     *Certs
	Net       ClusterNetwork
	ExtraArgs map[string]string
	Log       *slog.Logger
}

// The control plane and its datastore end the process when they fail.
var _ = []supervise.Critical{(*Datastore)(nil), (*APIServer)(nil), (*ControllerManager)(nil), (*Scheduler)(nil)}

// Name implements supervise.Component.
func (c *ControllerManager) Name() string { return "kube-controller-manager" }

// Critical implements supervise.Critical: without it the node is not a node, so its
// failure ends the process.
func (c *ControllerManager) Critical() bool { return true }

// DefaultArgs returns gluebox's controller-manager flags before user overrides.
func (c *ControllerManager) DefaultArgs() map[string]string {
	k := c.Certs
	return map[string]string{
		"kubeconfig":                       k.ControllerKubecfg,
		"authentication-kubeconfig":        k.ControllerKubecfg,
		"authorization-kubeconfig":         k.ControllerKubecfg,
		"bind-address":                     "127.0.0.1",
		"secure-port":                      "10257",
		"cluster-cidr":                     c.Net.ClusterCIDR,
		"service-cluster-ip-range":         c.Net.ServiceCIDR,
		"allocate-node-cidrs":              "false",
		"cluster-signing-cert-file":        k.CA.CertFile,
		"cluster-signing-key-file":         k.CA.KeyFile,
		"root-ca-file":                     k.CA.CertFile,
		"service-account-private-key-file": k.ServiceAccountKey,
		"use-service-account-credentials":  "true",
		"leader-elect":                     "false",
		"profiling":                        "false",
		"terminated-pod-gc-threshold":      "1000",
		"controllers":                      "*,tokencleaner",
	}
}

// Run implements supervise.Component.
func (c *ControllerManager) Run(ctx context.Context) error {
	s, err := cmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	nfs := s.Flags(cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	s.ParsedFlags = &nfs
	if err := parseInto("kube-controller-manager", nfs, Args(c.DefaultArgs(), c.ExtraArgs)); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-controller-manager: cannot set feature gates: %w", err)
	}
	cfg, err := s.Config(ctx, cmapp.KnownControllers(), cmapp.ControllersDisabledByDefault(), cmapp.ControllerAliases())
	if err != nil {
		return fmt.Errorf("kube-controller-manager: invalid options: %w", err)
	}
	// The controllers watch every API, deprecated ones included (as upstream's binary, which
	// silences them process-wide). Only this config is silenced, so users' manifests applied by
	// other clients in this process keep their deprecation warnings. Every controller client
	// is built from it (rest.CopyConfig and AnonymousClientConfig keep the handler).
	cfg.Kubeconfig.WarningHandler = rest.NoWarnings{}
	if err := cmapp.Run(ctx, cfg.Complete()); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// WaitReady implements supervise.Component.
func (c *ControllerManager) WaitReady(ctx context.Context) error {
	return supervise.PollHTTP(ctx, "https://127.0.0.1:10257/healthz", true)
}

// Scheduler runs kube-scheduler in-process.
type Scheduler struct {
	Certs     *Certs
	ExtraArgs map[string]string
	Log       *slog.Logger
}

// Name implements supervise.Component.
func (s *Scheduler) Name() string { return "kube-scheduler" }

// Critical implements supervise.Critical: without it the node is not a node, so its
// failure ends the process.
func (s *Scheduler) Critical() bool { return true }

// DefaultArgs returns gluebox's scheduler flags before user overrides.
func (s *Scheduler) DefaultArgs() map[string]string {
	k := s.Certs
	return map[string]string{
		"kubeconfig":                k.SchedulerKubecfg,
		"authentication-kubeconfig": k.SchedulerKubecfg,
		"authorization-kubeconfig":  k.SchedulerKubecfg,
		"bind-address":              "127.0.0.1",
		"secure-port":               "10259",
		"leader-elect":              "false",
		"profiling":                 "false",
	}
}

// Run implements supervise.Component.
func (s *Scheduler) Run(ctx context.Context) error {
	opts := schedoptions.NewOptions()
	if err := parseInto("kube-scheduler", *opts.Flags, Args(s.DefaultArgs(), s.ExtraArgs)); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-scheduler: cannot set feature gates: %w", err)
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	if err := schedapp.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// WaitReady implements supervise.Component.
func (s *Scheduler) WaitReady(ctx context.Context) error {
	return supervise.PollHTTP(ctx, "https://127.0.0.1:10259/healthz", true)
}
