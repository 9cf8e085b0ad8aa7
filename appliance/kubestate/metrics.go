package kubestate

import (
	"fmt"
	"strings"
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/prometheus/client_golang/prometheus"
)

// scalar is a family with one series per object.
type scalar[T any] struct {
	desc *prometheus.Desc
	// value returns the sample, or false when the object has none (an unset field that
	// kube-state-metrics skips rather than reporting as 0).
	value func(T) (float64, bool)
}

// collector computes the metrics from the Exporter's caches at each Collect.
type collector struct {
	e     *Exporter
	descs []*prometheus.Desc

	podInfo, podPhase, podReady                             *prometheus.Desc
	restarts, ctrReady, running, waiting                    *prometheus.Desc
	waitingReason, lastTerminatedReason, requests, limits   *prometheus.Desc
	deploymentCondition                                     *prometheus.Desc
	deployment                                              []scalar[*appsv1.Deployment]
	statefulSet                                             []scalar[*appsv1.StatefulSet]
	daemonSet                                               []scalar[*appsv1.DaemonSet]
	nodeCondition, nodeAllocatable, nodeCapacity, nodeUnsch *prometheus.Desc

	// lastDropped is the number of series the previous Collect dropped.
	lastDropped atomic.Int64
}

var _ prometheus.Collector = (*collector)(nil)

var (
	podPhases         = []corev1.PodPhase{corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown, corev1.PodRunning}
	conditionStatuses = []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown}
)

func newCollector(e *Exporter) *collector {
	c := &collector{e: e}
	pod := func(name, help string, extra ...string) *prometheus.Desc {
		return c.desc(name, help, namespaced("pod", extra...)...)
	}
	c.podInfo = pod("kube_pod_info", "Information about pod.", "node", "created_by_kind", "created_by_name")
	c.podPhase = pod("kube_pod_status_phase", "The pods current phase.", "phase")
	c.podReady = pod("kube_pod_status_ready", "Describes whether the pod is ready to serve requests.", "condition")
	c.restarts = pod("kube_pod_container_status_restarts_total", "The number of container restarts per container.", "container")
	c.ctrReady = pod("kube_pod_container_status_ready", "Describes whether the containers readiness check succeeded.", "container")
	c.running = pod("kube_pod_container_status_running", "Describes whether the container is currently in running state.", "container")
	c.waiting = pod("kube_pod_container_status_waiting", "Describes whether the container is currently in waiting state.", "container")
	c.waitingReason = pod("kube_pod_container_status_waiting_reason", "Describes the reason the container is currently in waiting state.", "container", "reason")
	c.lastTerminatedReason = pod("kube_pod_container_status_last_terminated_reason", "Describes the last reason the container was in terminated state.", "container", "reason")
	c.requests = pod("kube_pod_container_resource_requests", "The number of requested request resource by a container.", "container", "node", "resource", "unit")
	c.limits = pod("kube_pod_container_resource_limits", "The number of requested limit resource by a container.", "container", "node", "resource", "unit")

	dep := func(name, help string, value func(*appsv1.Deployment) (float64, bool)) scalar[*appsv1.Deployment] {
		return scalar[*appsv1.Deployment]{c.desc(name, help, namespaced("deployment")...), value}
	}
	c.deployment = []scalar[*appsv1.Deployment]{
		dep("kube_deployment_spec_replicas", "Number of desired pods for a deployment.",
			func(d *appsv1.Deployment) (float64, bool) { return optional(d.Spec.Replicas) }),
		dep("kube_deployment_status_replicas", "The number of replicas per deployment.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Status.Replicas), true }),
		dep("kube_deployment_status_replicas_ready", "The number of ready replicas per deployment.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Status.ReadyReplicas), true }),
		dep("kube_deployment_status_replicas_available", "The number of available replicas per deployment.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Status.AvailableReplicas), true }),
		dep("kube_deployment_status_replicas_unavailable", "The number of unavailable replicas per deployment.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Status.UnavailableReplicas), true }),
		dep("kube_deployment_status_replicas_updated", "The number of updated replicas per deployment.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Status.UpdatedReplicas), true }),
		dep("kube_deployment_status_observed_generation", "The generation observed by the deployment controller.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Status.ObservedGeneration), true }),
		dep("kube_deployment_metadata_generation", "Sequence number representing a specific generation of the desired state.",
			func(d *appsv1.Deployment) (float64, bool) { return float64(d.Generation), true }),
	}
	c.deploymentCondition = c.desc("kube_deployment_status_condition", "The current status conditions of a deployment.",
		namespaced("deployment", "condition", "status")...)

	sts := func(name, help string, value func(*appsv1.StatefulSet) (float64, bool)) scalar[*appsv1.StatefulSet] {
		return scalar[*appsv1.StatefulSet]{c.desc(name, help, namespaced("statefulset")...), value}
	}
	c.statefulSet = []scalar[*appsv1.StatefulSet]{
		sts("kube_statefulset_replicas", "Number of desired pods for a StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return optional(s.Spec.Replicas) }),
		sts("kube_statefulset_status_replicas", "The number of replicas per StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Status.Replicas), true }),
		sts("kube_statefulset_status_replicas_ready", "The number of ready replicas per StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Status.ReadyReplicas), true }),
		sts("kube_statefulset_status_replicas_current", "The number of current replicas per StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Status.CurrentReplicas), true }),
		sts("kube_statefulset_status_replicas_updated", "The number of updated replicas per StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Status.UpdatedReplicas), true }),
		sts("kube_statefulset_status_replicas_available", "The number of available replicas per StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Status.AvailableReplicas), true }),
		sts("kube_statefulset_status_observed_generation", "The generation observed by the StatefulSet controller.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Status.ObservedGeneration), true }),
		sts("kube_statefulset_metadata_generation", "Sequence number representing a specific generation of the desired state for the StatefulSet.",
			func(s *appsv1.StatefulSet) (float64, bool) { return float64(s.Generation), true }),
	}

	ds := func(name, help string, value func(*appsv1.DaemonSet) (float64, bool)) scalar[*appsv1.DaemonSet] {
		return scalar[*appsv1.DaemonSet]{c.desc(name, help, namespaced("daemonset")...), value}
	}
	c.daemonSet = []scalar[*appsv1.DaemonSet]{
		ds("kube_daemonset_status_desired_number_scheduled", "The number of nodes that should be running the daemon pod.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.DesiredNumberScheduled), true }),
		ds("kube_daemonset_status_current_number_scheduled", "The number of nodes running at least one daemon pod and are supposed to.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.CurrentNumberScheduled), true }),
		ds("kube_daemonset_status_updated_number_scheduled", "The total number of nodes that are running updated daemon pod.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.UpdatedNumberScheduled), true }),
		ds("kube_daemonset_status_number_ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.NumberReady), true }),
		ds("kube_daemonset_status_number_available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.NumberAvailable), true }),
		ds("kube_daemonset_status_number_unavailable", "The number of nodes that should be running the daemon pod and have none of the daemon pod running and available.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.NumberUnavailable), true }),
		ds("kube_daemonset_status_number_misscheduled", "The number of nodes running a daemon pod but are not supposed to.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.NumberMisscheduled), true }),
		ds("kube_daemonset_status_observed_generation", "The most recent generation observed by the daemon set controller.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Status.ObservedGeneration), true }),
		ds("kube_daemonset_metadata_generation", "Sequence number representing a specific generation of the desired state.",
			func(d *appsv1.DaemonSet) (float64, bool) { return float64(d.Generation), true }),
	}

	c.nodeCondition = c.desc("kube_node_status_condition", "The condition of a cluster node.", "node", "condition", "status")
	c.nodeAllocatable = c.desc("kube_node_status_allocatable", "The allocatable for different resources of a node that are available for scheduling.", "node", "resource", "unit")
	c.nodeCapacity = c.desc("kube_node_status_capacity", "The capacity for different resources of a node.", "node", "resource", "unit")
	c.nodeUnsch = c.desc("kube_node_spec_unschedulable", "Whether a node can schedule new pods.", "node")
	return c
}

func (c *collector) desc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, nil)
	c.descs = append(c.descs, d)
	return d
}

// namespaced returns the label names of a family of namespaced objects of kind: namespace and
// kind first, as kube-state-metrics has them, then extra, then gluebox's app and env.
func namespaced(kind string, extra ...string) []string {
	return append(append([]string{"namespace", kind}, extra...), "app", "env")
}

// Describe sends every family's descriptor, whether or not it has series yet.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect sends the series computed from the caches, or nothing before they have synced and
// after Run has returned (stale series would look current).
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if !c.e.live() {
		return
	}
	em := &emitter{ch: ch, seen: map[seriesKey]struct{}{}}
	ns := &namespaceLabels{c: c, memo: map[string][2]string{}}
	c.collectPods(em, ns)
	c.collectDeployments(em, ns)
	c.collectStatefulSets(em, ns)
	c.collectDaemonSets(em, ns)
	c.collectNodes(em)
	// Report dropped series when their number changes, not at every scrape.
	if last := c.lastDropped.Swap(int64(em.dropped)); em.dropped > 0 && int64(em.dropped) != last {
		c.e.log.Warn("dropped series that would have broken the scrape", "count", em.dropped, "first", em.firstErr)
	}
}

func (c *collector) collectPods(em *emitter, ns *namespaceLabels) {
	pods, err := c.e.pods.List(labels.Everything())
	if err != nil {
		em.fail(fmt.Errorf("list pods from the cache: %w", err))
		return
	}
	for _, p := range pods {
		app, env := ns.get(p.Namespace)
		lv := func(extra ...string) []string {
			return append(append([]string{p.Namespace, p.Name}, extra...), app, env)
		}
		kind, name := "<none>", "<none>"
		if ref := metav1.GetControllerOf(p); ref != nil {
			if ref.Kind != "" {
				kind = ref.Kind
			}
			if ref.Name != "" {
				name = ref.Name
			}
		}
		em.gauge(c.podInfo, 1, lv(p.Spec.NodeName, kind, name)...)
		if p.Status.Phase != "" {
			for _, ph := range podPhases {
				em.gauge(c.podPhase, boolFloat(p.Status.Phase == ph), lv(string(ph))...)
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady {
				for _, s := range conditionStatuses {
					em.gauge(c.podReady, boolFloat(cond.Status == s), lv(strings.ToLower(string(s)))...)
				}
			}
		}
		for _, cs := range p.Status.ContainerStatuses {
			em.counter(c.restarts, float64(cs.RestartCount), lv(cs.Name)...)
			em.gauge(c.ctrReady, boolFloat(cs.Ready), lv(cs.Name)...)
			em.gauge(c.running, boolFloat(cs.State.Running != nil), lv(cs.Name)...)
			em.gauge(c.waiting, boolFloat(cs.State.Waiting != nil), lv(cs.Name)...)
			if w := cs.State.Waiting; w != nil {
				em.gauge(c.waitingReason, 1, lv(cs.Name, w.Reason)...)
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				em.gauge(c.lastTerminatedReason, 1, lv(cs.Name, t.Reason)...)
			}
		}
		for _, ctr := range p.Spec.Containers {
			for rn, q := range ctr.Resources.Requests {
				if res, unit, v, ok := resourceSample(rn, q); ok {
					em.gauge(c.requests, v, lv(ctr.Name, p.Spec.NodeName, res, unit)...)
				}
			}
			for rn, q := range ctr.Resources.Limits {
				if res, unit, v, ok := resourceSample(rn, q); ok {
					em.gauge(c.limits, v, lv(ctr.Name, p.Spec.NodeName, res, unit)...)
				}
			}
		}
	}
}

func (c *collector) collectDeployments(em *emitter, ns *namespaceLabels) {
	deps, err := c.e.deployments.List(labels.Everything())
	if err != nil {
		em.fail(fmt.Errorf("list deployments from the cache: %w", err))
		return
	}
	for _, d := range deps {
		app, env := ns.get(d.Namespace)
		emitScalars(em, c.deployment, d, d.Namespace, d.Name, app, env)
		for _, cond := range d.Status.Conditions {
			for _, s := range conditionStatuses {
				em.gauge(c.deploymentCondition, boolFloat(cond.Status == s),
					d.Namespace, d.Name, string(cond.Type), strings.ToLower(string(s)), app, env)
			}
		}
	}
}

func (c *collector) collectStatefulSets(em *emitter, ns *namespaceLabels) {
	sets, err := c.e.statefulSets.List(labels.Everything())
	if err != nil {
		em.fail(fmt.Errorf("list statefulsets from the cache: %w", err))
		return
	}
	for _, s := range sets {
		app, env := ns.get(s.Namespace)
		emitScalars(em, c.statefulSet, s, s.Namespace, s.Name, app, env)
	}
}

func (c *collector) collectDaemonSets(em *emitter, ns *namespaceLabels) {
	sets, err := c.e.daemonSets.List(labels.Everything())
	if err != nil {
		em.fail(fmt.Errorf("list daemonsets from the cache: %w", err))
		return
	}
	for _, d := range sets {
		app, env := ns.get(d.Namespace)
		emitScalars(em, c.daemonSet, d, d.Namespace, d.Name, app, env)
	}
}

func (c *collector) collectNodes(em *emitter) {
	nodes, err := c.e.nodes.List(labels.Everything())
	if err != nil {
		em.fail(fmt.Errorf("list nodes from the cache: %w", err))
		return
	}
	for _, n := range nodes {
		for _, cond := range n.Status.Conditions {
			for _, s := range conditionStatuses {
				em.gauge(c.nodeCondition, boolFloat(cond.Status == s), n.Name, string(cond.Type), strings.ToLower(string(s)))
			}
		}
		for rn, q := range n.Status.Allocatable {
			if res, unit, v, ok := resourceSample(rn, q); ok {
				em.gauge(c.nodeAllocatable, v, n.Name, res, unit)
			}
		}
		for rn, q := range n.Status.Capacity {
			if res, unit, v, ok := resourceSample(rn, q); ok {
				em.gauge(c.nodeCapacity, v, n.Name, res, unit)
			}
		}
		em.gauge(c.nodeUnsch, boolFloat(n.Spec.Unschedulable), n.Name)
	}
}

func emitScalars[T any](em *emitter, fams []scalar[T], obj T, namespace, name, app, env string) {
	for _, f := range fams {
		if v, ok := f.value(obj); ok {
			em.gauge(f.desc, v, namespace, name, app, env)
		}
	}
}

// namespaceLabels looks up the app and env labels of namespaces, once per namespace and scrape.
type namespaceLabels struct {
	c    *collector
	memo map[string][2]string
}

func (n *namespaceLabels) get(namespace string) (app, env string) {
	if v, ok := n.memo[namespace]; ok {
		return v[0], v[1]
	}
	// A namespace missing from the cache (its watch event not in yet) gets "", "" like an
	// unlabelled one; the next scrape has it.
	ns, err := n.c.e.namespaces.Get(namespace)
	if err == nil {
		app, env = ns.Labels[AppNamespaceLabel], ns.Labels[EnvNamespaceLabel]
	} else if !apierrors.IsNotFound(err) {
		n.c.e.log.Debug("cannot read namespace from the cache", "namespace", namespace, "err", err)
	}
	n.memo[namespace] = [2]string{app, env}
	return app, env
}

type seriesKey struct {
	desc   *prometheus.Desc
	values string
}

// emitter sends const metrics and drops, rather than sends, any series that would make the
// registry fail the whole scrape: a second series with the same labels (duplicate condition
// types or container names in a status) or a label value that is not UTF-8.
type emitter struct {
	ch       chan<- prometheus.Metric
	seen     map[seriesKey]struct{}
	dropped  int
	firstErr error
}

func (em *emitter) gauge(d *prometheus.Desc, v float64, lvs ...string) {
	em.send(d, prometheus.GaugeValue, v, lvs)
}

func (em *emitter) counter(d *prometheus.Desc, v float64, lvs ...string) {
	em.send(d, prometheus.CounterValue, v, lvs)
}

func (em *emitter) send(d *prometheus.Desc, t prometheus.ValueType, v float64, lvs []string) {
	k := seriesKey{d, strings.Join(lvs, "\xff")}
	if _, dup := em.seen[k]; dup {
		em.fail(fmt.Errorf("duplicate series %s %q", d, lvs))
		return
	}
	m, err := prometheus.NewConstMetric(d, t, v, lvs...)
	if err != nil {
		em.fail(err)
		return
	}
	em.seen[k] = struct{}{}
	em.ch <- m
}

func (em *emitter) fail(err error) {
	em.dropped++
	if em.firstErr == nil {
		em.firstErr = err
	}
}

// resourceSample converts a resource quantity the way kube-state-metrics does: cpu in cores,
// memory, storage, ephemeral-storage, hugepages-* and attachable-volumes-* in bytes, pods and
// extended resources as integers. Other resources (kubernetes.io/-prefixed ones, requests.*)
// have no series.
func resourceSample(name corev1.ResourceName, q resource.Quantity) (res, unit string, v float64, ok bool) {
	res = sanitizeLabelValue(string(name))
	switch {
	case name == corev1.ResourceCPU:
		return res, "core", float64(q.MilliValue()) / 1000, true
	case name == corev1.ResourceMemory, name == corev1.ResourceStorage, name == corev1.ResourceEphemeralStorage,
		strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix),
		strings.HasPrefix(string(name), corev1.ResourceAttachableVolumesPrefix):
		return res, "byte", float64(q.Value()), true
	case name == corev1.ResourcePods, isExtendedResource(name):
		return res, "integer", float64(q.Value()), true
	}
	return "", "", 0, false
}

// isExtendedResource reports whether name is an extended resource such as nvidia.com/gpu: a
// domain-prefixed name outside kubernetes.io that is valid as a quota name.
func isExtendedResource(name corev1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.Contains(s, corev1.ResourceDefaultNamespacePrefix) ||
		strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix) {
		return false
	}
	return len(validation.IsQualifiedName(corev1.DefaultResourceRequestsPrefix+s)) == 0
}

// sanitizeLabelValue replaces every character outside [a-zA-Z0-9_] with "_", as
// kube-state-metrics does for resource names ("ephemeral-storage" becomes "ephemeral_storage").
func sanitizeLabelValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

func optional(p *int32) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return float64(*p), true
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
