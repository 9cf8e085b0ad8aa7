// Package kubestate is gluebox's small kube-state-metrics: it watches Pods, Deployments,
// StatefulSets, DaemonSets, Nodes and Namespaces through client-go shared informers and turns
// what the caches hold into Prometheus metrics at scrape time. Metric names, label names and
// values are kube-state-metrics v2's, because the alert rules and dashboards are written
// against them.
//
// It owns nothing in the cluster: it only lists and watches (RBAC: get, list and watch on those
// six resources). It owns no registry either: the caller registers Collector() in its own
// prometheus.Registry and serves it on gluebox's metrics endpoint, which VictoriaMetrics
// scrapes.
//
// Lifecycle: New validates the Config and sets the informers up; Run starts them, is ready
// (WaitReady) once every cache has synced and returns nil when its context ends. Until the caches
// have synced the collector emits nothing at all, so a scrape never reports zeros for objects
// it has not seen yet; once Run has returned it emits nothing either, rather than stale series.
// Run may be called once. Only the server wiring should import it.
//
// # gluebox labels
//
// Every Pod, Deployment, StatefulSet and DaemonSet series carries two labels kube-state-metrics
// does not have, app and env, copied from the labels gluebox.dev/app and gluebox.dev/env of the
// object's Namespace (the GitOps engine puts them on every environment's namespace). They are
// "" in namespaces without those labels (kube-system, anything created by hand), so dashboards
// can group by app and env and still see the rest under app="". A relabelled namespace shows
// on the next scrape.
//
// # Metrics
//
// Label lists below leave out app and env.
//
// Pods (labels namespace, pod):
//
//	kube_pod_info{node,created_by_kind,created_by_name}        1; kind and name of the
//	                                                           controller, "<none>" without one
//	kube_pod_status_phase{phase}                               1 for the current phase, 0 for the
//	                                                           other four; nothing without a phase
//	kube_pod_status_ready{condition="true"|"false"|"unknown"}  1 for the Ready condition's status,
//	                                                           0 for the others; nothing without
//	                                                           a Ready condition
//	kube_pod_container_status_restarts_total{container}        counter
//	kube_pod_container_status_ready{container}                 0 or 1
//	kube_pod_container_status_running{container}               0 or 1
//	kube_pod_container_status_waiting{container}               0 or 1
//	kube_pod_container_status_waiting_reason{container,reason} 1 while waiting (CrashLoopBackOff,
//	                                                           ImagePullBackOff...), else no series
//	kube_pod_container_status_last_terminated_reason{container,reason}
//	                                                           1 once terminated before (OOMKilled,
//	                                                           Error...), else no series
//	kube_pod_container_resource_requests{container,node,resource,unit}
//	kube_pod_container_resource_limits{container,node,resource,unit}
//
// Container metrics cover spec.containers, not init containers. Resources are reported as
// kube-state-metrics does: cpu in unit "core"; memory, storage, ephemeral_storage and
// hugepages_* in "byte"; pods and extended resources (nvidia_com_gpu...) in "integer"; every
// character of a resource name outside [a-zA-Z0-9_] becomes "_".
//
// Deployments (namespace, deployment): kube_deployment_spec_replicas (only when set),
// kube_deployment_status_replicas, kube_deployment_status_replicas_ready, _available,
// _unavailable and _updated, kube_deployment_status_observed_generation,
// kube_deployment_metadata_generation, and
// kube_deployment_status_condition{condition,status="true"|"false"|"unknown"} (three series per
// condition, 1 for its status).
//
// StatefulSets (namespace, statefulset): kube_statefulset_replicas (only when set),
// kube_statefulset_status_replicas, kube_statefulset_status_replicas_ready, _current, _updated
// and _available, kube_statefulset_status_observed_generation,
// kube_statefulset_metadata_generation.
//
// DaemonSets (namespace, daemonset): kube_daemonset_status_desired_number_scheduled,
// kube_daemonset_status_current_number_scheduled, _updated_number_scheduled, _number_ready,
// _number_available, _number_unavailable and _number_misscheduled,
// kube_daemonset_status_observed_generation, kube_daemonset_metadata_generation.
//
// Nodes (node): kube_node_status_condition{condition,status} (as for deployments),
// kube_node_status_allocatable{resource,unit}, kube_node_status_capacity{resource,unit} and
// kube_node_spec_unschedulable.
//
// A series that would make the registry fail the whole scrape (a second series with the same
// labels, from a status listing a condition type twice, or a label value that is not UTF-8) is
// dropped and logged instead.
package kubestate
