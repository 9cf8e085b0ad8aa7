package kube

import (
	"flag"
	"io"

	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

// The embedded Kubernetes components share one process, and some of their state is
// process-wide by construction upstream. This file is the one place gluebox sets it.
//
//   - klog: every Kubernetes package logs through klog's single global logger, so its output is
//     chosen once per process, by RedirectKlog.
//   - Feature gates: kube-apiserver, kube-controller-manager and kube-scheduler each apply their
//     parsed --feature-gates (ComponentGlobalsRegistry.Set in their Run) to the same
//     process-wide gate, k8s.io/apiserver/pkg/util/feature.DefaultMutableFeatureGate, and the
//     kubelet (appliance/node) applies its configuration's featureGates there too. A gate set
//     through one component's extra args therefore holds for all of them; gluebox sets none.
//   - client-go's default warning handler is deliberately NOT set here: it would also silence
//     API deprecation warnings for the clients that apply users' manifests. The
//     controller-manager, which upstream silences because it watches every API, deprecated ones
//     included, gets rest.NoWarnings on its own client config instead (controllers.go).

// RedirectKlog sends the Kubernetes components' logs to w instead of gluebox's stderr. It
// changes klog's process-wide settings; call it once, before any component starts.
func RedirectKlog(w io.Writer) {
	// Each component applies its logging options on start; by default a second application
	// in the same process is an error, so unchanged re-applications are let through.
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for k, v := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "one_output": "true", "stderrthreshold": "FATAL"} {
		_ = fs.Set(k, v)
	}
	klog.SetOutput(w)
}
