package kubestate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/gluebox/gluebox/appliance/internal/golden"
)

// watchedResources are the resources an Exporter watches.
var watchedResources = []string{"pods", "nodes", "namespaces", "deployments", "statefulsets", "daemonsets"}

// testExporter is an Exporter running against a fake clientset, registered in its own registry.
type testExporter struct {
	*Exporter
	cs  *fake.Clientset
	reg *prometheus.Registry

	mu      sync.Mutex
	watches map[string]bool
}

// newTestExporter wires an Exporter to a fake clientset holding objs and registers its
// collector in a fresh pedantic registry (which also checks Collect against Describe). It does
// not start it: see start.
func newTestExporter(t *testing.T, objs ...runtime.Object) *testExporter {
	t.Helper()
	return newTestExporterLog(t, nil, objs...)
}

// newTestExporterLog is newTestExporter with the Exporter logging to logger.
func newTestExporterLog(t *testing.T, logger *slog.Logger, objs ...runtime.Object) *testExporter {
	t.Helper()
	te := &testExporter{cs: fake.NewClientset(objs...), reg: prometheus.NewPedanticRegistry(), watches: map[string]bool{}}
	// Record established watches: the fake's watches do not replay what changed between the
	// informers' list and their watch, so tests change objects only once all are watching.
	te.cs.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		te.mu.Lock()
		te.watches[a.GetResource().Resource] = true
		te.mu.Unlock()
		return false, nil, nil
	})
	e, err := New(Config{Client: te.cs}, logger)
	if err != nil {
		t.Fatal(err)
	}
	te.Exporter = e
	te.reg.MustRegister(e.Collector())
	return te
}

// start runs the exporter until the test ends, when it checks that Run returned nil.
func (te *testExporter) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- te.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	})
}

// waitReady waits for Ready and for every informer's watch.
// readyNow reports whether WaitReady says the caches have synced, without waiting.
func (te *testExporter) readyNow() bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return te.WaitReady(ctx) == nil
}

func (te *testExporter) waitReady(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := te.WaitReady(ctx); err != nil {
		t.Fatalf("caches did not sync within 10s: %v", err)
	}
	eventually(t, func() error {
		te.mu.Lock()
		defer te.mu.Unlock()
		var missing []string
		for _, r := range watchedResources {
			if !te.watches[r] {
				missing = append(missing, r)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not watching %s yet", strings.Join(missing, ", "))
		}
		return nil
	})
}

// eventually polls check until it returns nil, failing the test with its last error after 10s.
func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- fixtures ----

const (
	shop = "shop-prod"
	sys  = "kube-system"
)

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func controller(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: types.UID("uid-" + name), Controller: &yes}}
}

func readyCondition(s corev1.ConditionStatus) []corev1.PodCondition {
	return []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: s}}
}

func resources(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

// webReady is the web pod, ready with one restart behind it.
func webReady() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-6d4f-abcde", Namespace: shop, OwnerReferences: controller("ReplicaSet", "web-6d4f"),
			Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{
			Name: "web", Resources: corev1.ResourceRequirements{
				Requests: resources("cpu", "250m", "memory", "128Mi"),
				Limits:   resources("memory", "256Mi"),
			},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition(corev1.ConditionTrue),
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, RestartCount: 1,
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}},
			}}},
	}
}

// webStarting is a second web pod, running but not ready yet.
func webStarting() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-6d4f-fghij", Namespace: shop, OwnerReferences: controller("ReplicaSet", "web-6d4f")},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{
			Name: "web", Resources: corev1.ResourceRequirements{Requests: resources("cpu", "250m", "memory", "128Mi")},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition(corev1.ConditionFalse),
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
}

// workerCrashing crash-loops after being OOM-killed five times.
func workerCrashing() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-0", Namespace: shop, OwnerReferences: controller("StatefulSet", "worker")},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{
			Name: "worker", Resources: corev1.ResourceRequirements{Limits: resources("cpu", "1", "memory", "64Mi")},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: readyCondition(corev1.ConditionFalse),
			ContainerStatuses: []corev1.ContainerStatus{{Name: "worker", RestartCount: 5,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "OOMKilled", ExitCode: 137}},
			}}},
	}
}

// pullingPod is a pending pod of an unlabelled namespace whose image cannot be pulled; it has
// no controller and no Ready condition yet.
func pullingPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: sys},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "shell"}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "shell",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}},
	}
}

func int32p(v int32) *int32 { return &v }

// webDeployment wants 3 replicas and has 2 available.
func webDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: shop, Generation: 4},
		Spec:       appsv1.DeploymentSpec{Replicas: int32p(3)},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 4, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 2,
			AvailableReplicas: 2, UnavailableReplicas: 1, Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable"},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
			}},
	}
}

func workerStatefulSet() *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "worker", Namespace: shop, Generation: 1},
		Spec:       appsv1.StatefulSetSpec{Replicas: int32p(1)},
		Status: appsv1.StatefulSetStatus{ObservedGeneration: 1, Replicas: 1, CurrentReplicas: 1, UpdatedReplicas: 1,
			ReadyReplicas: 0, AvailableReplicas: 0},
	}
}

func logsDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "logs", Namespace: sys, Generation: 2},
		Status: appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1,
			UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1},
	}
}

func nodeA() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue},
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodeDiskPressure, Status: corev1.ConditionUnknown},
			},
			Capacity:    resources("cpu", "4", "memory", "8Gi", "pods", "110"),
			Allocatable: resources("cpu", "3800m", "memory", "7Gi", "pods", "110", "ephemeral-storage", "50Gi", "nvidia.com/gpu", "1", "kubernetes.io/batch-cpu", "1"),
		},
	}
}

func cluster() []runtime.Object {
	return []runtime.Object{
		namespace(shop, map[string]string{AppNamespaceLabel: "shop", EnvNamespaceLabel: "prod"}),
		namespace(sys, nil),
		nodeA(),
		webReady(), webStarting(), workerCrashing(), pullingPod(),
		webDeployment(), workerStatefulSet(), logsDaemonSet(),
	}
}

// ---- tests ----

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no client", Config{}, "a Kubernetes client is required"},
		{"negative resync", Config{Client: fake.NewClientset(), ResyncPeriod: -time.Second}, "ResyncPeriod is -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestNothingBeforeSync holds the pod list back: until the caches have synced, a scrape has no
// series at all (no zeros for objects not seen yet), and once synced it has them.
func TestNothingBeforeSync(t *testing.T) {
	te := newTestExporter(t, cluster()...)
	release, listing := make(chan struct{}), make(chan struct{}, 1)
	te.cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		select {
		case listing <- struct{}{}:
		default:
		}
		<-release
		return false, nil, nil
	})
	if n := testutil.CollectAndCount(te.Collector()); n != 0 {
		t.Fatalf("before Run: collected %d series, want none", n)
	}
	te.start(t)
	// Wait until the pod list is in flight: held, it keeps the caches from syncing.
	<-listing
	if te.readyNow() {
		t.Fatal("ready while the pod list was still pending")
	}
	if n := testutil.CollectAndCount(te.Collector()); n != 0 {
		t.Fatalf("before sync: collected %d series, want none", n)
	}
	if err := testutil.GatherAndCompare(te.reg, strings.NewReader("")); err != nil {
		t.Fatalf("before sync: %v", err)
	}
	close(release)
	te.waitReady(t)
	if n := testutil.CollectAndCount(te.Collector(), "kube_pod_info"); n != 4 {
		t.Fatalf("after sync: %d kube_pod_info series, want 4", n)
	}
}

// TestListErrorsAreLogged: a list the API refuses (say, a missing RBAC rule) shows up in
// gluebox's log, and the caches stay unsynced, so scrapes stay empty.
func TestListErrorsAreLogged(t *testing.T) {
	var logs syncBuffer
	te := newTestExporterLog(t, slog.New(slog.NewTextHandler(&logs, nil)), cluster()...)
	te.cs.PrependReactor("list", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "", errors.New("RBAC says no"))
	})
	te.start(t)
	eventually(t, func() error {
		if !strings.Contains(logs.String(), "resource=deployments") {
			return fmt.Errorf("no warning about deployments in the log:\n%s", logs.String())
		}
		return nil
	})
	if !strings.Contains(logs.String(), "RBAC says no") {
		t.Errorf("the warning does not carry the API's error:\n%s", logs.String())
	}
	if te.readyNow() {
		t.Fatal("ready although deployments cannot be listed")
	}
	if n := testutil.CollectAndCount(te.Collector()); n != 0 {
		t.Fatalf("collected %d series with a cache unsynced, want none", n)
	}
}

// TestNothingAfterRun: once Run has returned, the caches no longer follow the cluster and
// scrapes are empty again.
func TestNothingAfterRun(t *testing.T) {
	te := newTestExporter(t, cluster()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- te.Run(ctx) }()
	te.waitReady(t)
	if n := testutil.CollectAndCount(te.Collector(), "kube_pod_info"); n != 4 {
		t.Fatalf("while running: %d kube_pod_info series, want 4", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v, want nil on cancel", err)
	}
	if n := testutil.CollectAndCount(te.Collector()); n != 0 {
		t.Fatalf("after Run: collected %d series, want none", n)
	}
}

func TestRunTwice(t *testing.T) {
	te := newTestExporter(t)
	te.start(t)
	te.waitReady(t)
	if err := te.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("second Run: got %v, want an error", err)
	}
}

func TestRunCancelledBeforeSync(t *testing.T) {
	te := newTestExporter(t, cluster()...)
	release, listing := make(chan struct{}), make(chan struct{}, 1)
	te.cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		select {
		case listing <- struct{}{}:
		default:
		}
		<-release
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- te.Run(ctx) }()
	<-listing // Run is waiting for the caches
	cancel()
	close(release) // lets the pod informer's goroutine end, which Run waits for
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v, want nil on cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if te.readyNow() {
		t.Fatal("ready although the caches never synced")
	}
}

// TestExposition checks, against hand-written kube-state-metrics text, the series alert rules
// rely on, then the whole exposition against testdata/cluster.golden.
func TestExposition(t *testing.T) {
	te := newTestExporter(t, cluster()...)
	te.start(t)
	te.waitReady(t)

	for _, tc := range []struct {
		name     string
		metrics  []string
		expected string
	}{
		{"pods", []string{"kube_pod_info", "kube_pod_status_ready"}, `
# HELP kube_pod_info Information about pod.
# TYPE kube_pod_info gauge
kube_pod_info{app="",created_by_kind="<none>",created_by_name="<none>",env="",namespace="kube-system",node="node-a",pod="debug"} 1
kube_pod_info{app="shop",created_by_kind="ReplicaSet",created_by_name="web-6d4f",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-abcde"} 1
kube_pod_info{app="shop",created_by_kind="ReplicaSet",created_by_name="web-6d4f",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-fghij"} 1
kube_pod_info{app="shop",created_by_kind="StatefulSet",created_by_name="worker",env="prod",namespace="shop-prod",node="node-a",pod="worker-0"} 1
# HELP kube_pod_status_ready Describes whether the pod is ready to serve requests.
# TYPE kube_pod_status_ready gauge
kube_pod_status_ready{app="shop",condition="false",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 0
kube_pod_status_ready{app="shop",condition="true",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 1
kube_pod_status_ready{app="shop",condition="unknown",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 0
kube_pod_status_ready{app="shop",condition="false",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 1
kube_pod_status_ready{app="shop",condition="true",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 0
kube_pod_status_ready{app="shop",condition="unknown",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 0
kube_pod_status_ready{app="shop",condition="false",env="prod",namespace="shop-prod",pod="worker-0"} 1
kube_pod_status_ready{app="shop",condition="true",env="prod",namespace="shop-prod",pod="worker-0"} 0
kube_pod_status_ready{app="shop",condition="unknown",env="prod",namespace="shop-prod",pod="worker-0"} 0
`},
		{"phase", []string{"kube_pod_status_phase"}, `
# HELP kube_pod_status_phase The pods current phase.
# TYPE kube_pod_status_phase gauge
kube_pod_status_phase{app="",env="",namespace="kube-system",phase="Failed",pod="debug"} 0
kube_pod_status_phase{app="",env="",namespace="kube-system",phase="Pending",pod="debug"} 1
kube_pod_status_phase{app="",env="",namespace="kube-system",phase="Running",pod="debug"} 0
kube_pod_status_phase{app="",env="",namespace="kube-system",phase="Succeeded",pod="debug"} 0
kube_pod_status_phase{app="",env="",namespace="kube-system",phase="Unknown",pod="debug"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Failed",pod="web-6d4f-abcde"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Pending",pod="web-6d4f-abcde"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Running",pod="web-6d4f-abcde"} 1
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Succeeded",pod="web-6d4f-abcde"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Unknown",pod="web-6d4f-abcde"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Failed",pod="web-6d4f-fghij"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Pending",pod="web-6d4f-fghij"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Running",pod="web-6d4f-fghij"} 1
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Succeeded",pod="web-6d4f-fghij"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Unknown",pod="web-6d4f-fghij"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Failed",pod="worker-0"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Pending",pod="worker-0"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Running",pod="worker-0"} 1
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Succeeded",pod="worker-0"} 0
kube_pod_status_phase{app="shop",env="prod",namespace="shop-prod",phase="Unknown",pod="worker-0"} 0
`},
		{"containers", []string{"kube_pod_container_status_restarts_total", "kube_pod_container_status_waiting_reason",
			"kube_pod_container_status_running", "kube_pod_container_status_last_terminated_reason"}, `
# HELP kube_pod_container_status_last_terminated_reason Describes the last reason the container was in terminated state.
# TYPE kube_pod_container_status_last_terminated_reason gauge
kube_pod_container_status_last_terminated_reason{app="shop",container="web",env="prod",namespace="shop-prod",pod="web-6d4f-abcde",reason="Error"} 1
kube_pod_container_status_last_terminated_reason{app="shop",container="worker",env="prod",namespace="shop-prod",pod="worker-0",reason="OOMKilled"} 1
# HELP kube_pod_container_status_restarts_total The number of container restarts per container.
# TYPE kube_pod_container_status_restarts_total counter
kube_pod_container_status_restarts_total{app="",container="shell",env="",namespace="kube-system",pod="debug"} 0
kube_pod_container_status_restarts_total{app="shop",container="web",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 1
kube_pod_container_status_restarts_total{app="shop",container="web",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 0
kube_pod_container_status_restarts_total{app="shop",container="worker",env="prod",namespace="shop-prod",pod="worker-0"} 5
# HELP kube_pod_container_status_running Describes whether the container is currently in running state.
# TYPE kube_pod_container_status_running gauge
kube_pod_container_status_running{app="",container="shell",env="",namespace="kube-system",pod="debug"} 0
kube_pod_container_status_running{app="shop",container="web",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 1
kube_pod_container_status_running{app="shop",container="web",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 1
kube_pod_container_status_running{app="shop",container="worker",env="prod",namespace="shop-prod",pod="worker-0"} 0
# HELP kube_pod_container_status_waiting_reason Describes the reason the container is currently in waiting state.
# TYPE kube_pod_container_status_waiting_reason gauge
kube_pod_container_status_waiting_reason{app="",container="shell",env="",namespace="kube-system",pod="debug",reason="ImagePullBackOff"} 1
kube_pod_container_status_waiting_reason{app="shop",container="worker",env="prod",namespace="shop-prod",pod="worker-0",reason="CrashLoopBackOff"} 1
`},
		{"resources", []string{"kube_pod_container_resource_requests", "kube_pod_container_resource_limits"}, `
# HELP kube_pod_container_resource_limits The number of requested limit resource by a container.
# TYPE kube_pod_container_resource_limits gauge
kube_pod_container_resource_limits{app="shop",container="web",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-abcde",resource="memory",unit="byte"} 2.68435456e+08
kube_pod_container_resource_limits{app="shop",container="worker",env="prod",namespace="shop-prod",node="node-a",pod="worker-0",resource="cpu",unit="core"} 1
kube_pod_container_resource_limits{app="shop",container="worker",env="prod",namespace="shop-prod",node="node-a",pod="worker-0",resource="memory",unit="byte"} 6.7108864e+07
# HELP kube_pod_container_resource_requests The number of requested request resource by a container.
# TYPE kube_pod_container_resource_requests gauge
kube_pod_container_resource_requests{app="shop",container="web",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-abcde",resource="cpu",unit="core"} 0.25
kube_pod_container_resource_requests{app="shop",container="web",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-abcde",resource="memory",unit="byte"} 1.34217728e+08
kube_pod_container_resource_requests{app="shop",container="web",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-fghij",resource="cpu",unit="core"} 0.25
kube_pod_container_resource_requests{app="shop",container="web",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-fghij",resource="memory",unit="byte"} 1.34217728e+08
`},
		{"deployment", []string{"kube_deployment_spec_replicas", "kube_deployment_status_replicas_available",
			"kube_deployment_status_replicas_unavailable", "kube_deployment_status_condition"}, `
# HELP kube_deployment_spec_replicas Number of desired pods for a deployment.
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{app="shop",deployment="web",env="prod",namespace="shop-prod"} 3
# HELP kube_deployment_status_condition The current status conditions of a deployment.
# TYPE kube_deployment_status_condition gauge
kube_deployment_status_condition{app="shop",condition="Available",deployment="web",env="prod",namespace="shop-prod",status="false"} 1
kube_deployment_status_condition{app="shop",condition="Available",deployment="web",env="prod",namespace="shop-prod",status="true"} 0
kube_deployment_status_condition{app="shop",condition="Available",deployment="web",env="prod",namespace="shop-prod",status="unknown"} 0
kube_deployment_status_condition{app="shop",condition="Progressing",deployment="web",env="prod",namespace="shop-prod",status="false"} 0
kube_deployment_status_condition{app="shop",condition="Progressing",deployment="web",env="prod",namespace="shop-prod",status="true"} 1
kube_deployment_status_condition{app="shop",condition="Progressing",deployment="web",env="prod",namespace="shop-prod",status="unknown"} 0
# HELP kube_deployment_status_replicas_available The number of available replicas per deployment.
# TYPE kube_deployment_status_replicas_available gauge
kube_deployment_status_replicas_available{app="shop",deployment="web",env="prod",namespace="shop-prod"} 2
# HELP kube_deployment_status_replicas_unavailable The number of unavailable replicas per deployment.
# TYPE kube_deployment_status_replicas_unavailable gauge
kube_deployment_status_replicas_unavailable{app="shop",deployment="web",env="prod",namespace="shop-prod"} 1
`},
		{"workloads", []string{"kube_statefulset_replicas", "kube_statefulset_status_replicas_ready",
			"kube_daemonset_status_desired_number_scheduled", "kube_daemonset_status_number_ready"}, `
# HELP kube_daemonset_status_desired_number_scheduled The number of nodes that should be running the daemon pod.
# TYPE kube_daemonset_status_desired_number_scheduled gauge
kube_daemonset_status_desired_number_scheduled{app="",daemonset="logs",env="",namespace="kube-system"} 1
# HELP kube_daemonset_status_number_ready The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.
# TYPE kube_daemonset_status_number_ready gauge
kube_daemonset_status_number_ready{app="",daemonset="logs",env="",namespace="kube-system"} 1
# HELP kube_statefulset_replicas Number of desired pods for a StatefulSet.
# TYPE kube_statefulset_replicas gauge
kube_statefulset_replicas{app="shop",env="prod",namespace="shop-prod",statefulset="worker"} 1
# HELP kube_statefulset_status_replicas_ready The number of ready replicas per StatefulSet.
# TYPE kube_statefulset_status_replicas_ready gauge
kube_statefulset_status_replicas_ready{app="shop",env="prod",namespace="shop-prod",statefulset="worker"} 0
`},
		{"node", []string{"kube_node_status_condition", "kube_node_status_allocatable"}, `
# HELP kube_node_status_allocatable The allocatable for different resources of a node that are available for scheduling.
# TYPE kube_node_status_allocatable gauge
kube_node_status_allocatable{node="node-a",resource="cpu",unit="core"} 3.8
kube_node_status_allocatable{node="node-a",resource="ephemeral_storage",unit="byte"} 5.36870912e+10
kube_node_status_allocatable{node="node-a",resource="memory",unit="byte"} 7.516192768e+09
kube_node_status_allocatable{node="node-a",resource="nvidia_com_gpu",unit="integer"} 1
kube_node_status_allocatable{node="node-a",resource="pods",unit="integer"} 110
# HELP kube_node_status_condition The condition of a cluster node.
# TYPE kube_node_status_condition gauge
kube_node_status_condition{condition="DiskPressure",node="node-a",status="false"} 0
kube_node_status_condition{condition="DiskPressure",node="node-a",status="true"} 0
kube_node_status_condition{condition="DiskPressure",node="node-a",status="unknown"} 1
kube_node_status_condition{condition="MemoryPressure",node="node-a",status="false"} 1
kube_node_status_condition{condition="MemoryPressure",node="node-a",status="true"} 0
kube_node_status_condition{condition="MemoryPressure",node="node-a",status="unknown"} 0
kube_node_status_condition{condition="Ready",node="node-a",status="false"} 0
kube_node_status_condition{condition="Ready",node="node-a",status="true"} 1
kube_node_status_condition{condition="Ready",node="node-a",status="unknown"} 0
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := testutil.GatherAndCompare(te.reg, strings.NewReader(tc.expected), tc.metrics...); err != nil {
				t.Error(err)
			}
		})
	}

	golden.Check(t, "cluster.golden", exposition(t, te.reg))
}

// TestUpdates changes objects under a running exporter: the next scrapes follow.
func TestUpdates(t *testing.T) {
	te := newTestExporter(t, cluster()...)
	te.start(t)
	te.waitReady(t)
	ctx := context.Background()

	// The starting web pod becomes ready.
	p := webStarting()
	p.Status.Conditions = readyCondition(corev1.ConditionTrue)
	p.Status.ContainerStatuses[0].Ready = true
	if _, err := te.cs.CoreV1().Pods(shop).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The deployment scales from 3 to 5 and now has 3 available.
	d := webDeployment()
	d.Generation = 5
	d.Spec.Replicas = int32p(5)
	d.Status.AvailableReplicas, d.Status.UnavailableReplicas = 3, 2
	if _, err := te.cs.AppsV1().Deployments(shop).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The crash-looping pod goes away.
	if err := te.cs.CoreV1().Pods(shop).Delete(ctx, "worker-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// kube-system gets gluebox labels.
	if _, err := te.cs.CoreV1().Namespaces().Update(ctx, namespace(sys, map[string]string{AppNamespaceLabel: "gluebox", EnvNamespaceLabel: "system"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	want := `
# HELP kube_pod_info Information about pod.
# TYPE kube_pod_info gauge
kube_pod_info{app="gluebox",created_by_kind="<none>",created_by_name="<none>",env="system",namespace="kube-system",node="node-a",pod="debug"} 1
kube_pod_info{app="shop",created_by_kind="ReplicaSet",created_by_name="web-6d4f",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-abcde"} 1
kube_pod_info{app="shop",created_by_kind="ReplicaSet",created_by_name="web-6d4f",env="prod",namespace="shop-prod",node="node-a",pod="web-6d4f-fghij"} 1
# HELP kube_deployment_metadata_generation Sequence number representing a specific generation of the desired state.
# TYPE kube_deployment_metadata_generation gauge
kube_deployment_metadata_generation{app="shop",deployment="web",env="prod",namespace="shop-prod"} 5
# HELP kube_deployment_spec_replicas Number of desired pods for a deployment.
# TYPE kube_deployment_spec_replicas gauge
kube_deployment_spec_replicas{app="shop",deployment="web",env="prod",namespace="shop-prod"} 5
# HELP kube_deployment_status_replicas_available The number of available replicas per deployment.
# TYPE kube_deployment_status_replicas_available gauge
kube_deployment_status_replicas_available{app="shop",deployment="web",env="prod",namespace="shop-prod"} 3
# HELP kube_pod_container_status_waiting_reason Describes the reason the container is currently in waiting state.
# TYPE kube_pod_container_status_waiting_reason gauge
kube_pod_container_status_waiting_reason{app="gluebox",container="shell",env="system",namespace="kube-system",pod="debug",reason="ImagePullBackOff"} 1
# HELP kube_pod_status_ready Describes whether the pod is ready to serve requests.
# TYPE kube_pod_status_ready gauge
kube_pod_status_ready{app="shop",condition="false",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 0
kube_pod_status_ready{app="shop",condition="true",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 1
kube_pod_status_ready{app="shop",condition="unknown",env="prod",namespace="shop-prod",pod="web-6d4f-abcde"} 0
kube_pod_status_ready{app="shop",condition="false",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 0
kube_pod_status_ready{app="shop",condition="true",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 1
kube_pod_status_ready{app="shop",condition="unknown",env="prod",namespace="shop-prod",pod="web-6d4f-fghij"} 0
`
	eventually(t, func() error {
		return testutil.GatherAndCompare(te.reg, strings.NewReader(want),
			"kube_pod_info", "kube_pod_status_ready", "kube_pod_container_status_waiting_reason",
			"kube_deployment_spec_replicas", "kube_deployment_status_replicas_available", "kube_deployment_metadata_generation")
	})
}

// TestTrimObject checks that the caches keep no managed fields or annotations, and that
// tombstones stay tombstones.
func TestTrimObject(t *testing.T) {
	p := webReady()
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	got, _ := trimObject(p)
	if gp := got.(*corev1.Pod); gp.ManagedFields != nil || gp.Annotations != nil || gp.Name != "web-6d4f-abcde" {
		t.Errorf("trimObject(pod) = %+v", gp.ObjectMeta)
	}
	q := webReady()
	got, _ = trimObject(cache.DeletedFinalStateUnknown{Key: "shop-prod/web-6d4f-abcde", Obj: q})
	if _, ok := got.(cache.DeletedFinalStateUnknown); !ok {
		t.Fatalf("trimObject(tombstone) returned a %T", got)
	}
	if q.Annotations != nil {
		t.Errorf("tombstone's object kept its annotations")
	}
}

// TestDropsBadSeries checks that series which would fail the whole scrape are dropped: a
// duplicated condition type and a label value that is not UTF-8.
func TestDropsBadSeries(t *testing.T) {
	n := nodeA()
	n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse})
	p := pullingPod()
	p.Status.ContainerStatuses[0].State.Waiting.Reason = "bad\xffreason"
	var logs syncBuffer
	te := newTestExporterLog(t, slog.New(slog.NewTextHandler(&logs, nil)), n, p)
	te.start(t)
	te.waitReady(t)
	if got := testutil.CollectAndCount(te.Collector(), "kube_pod_info"); got != 1 {
		t.Fatalf("%d kube_pod_info series, want 1 (the pod with the bad reason)", got)
	}
	want := `
# HELP kube_node_status_condition The condition of a cluster node.
# TYPE kube_node_status_condition gauge
kube_node_status_condition{condition="DiskPressure",node="node-a",status="false"} 0
kube_node_status_condition{condition="DiskPressure",node="node-a",status="true"} 0
kube_node_status_condition{condition="DiskPressure",node="node-a",status="unknown"} 1
kube_node_status_condition{condition="MemoryPressure",node="node-a",status="false"} 1
kube_node_status_condition{condition="MemoryPressure",node="node-a",status="true"} 0
kube_node_status_condition{condition="MemoryPressure",node="node-a",status="unknown"} 0
kube_node_status_condition{condition="Ready",node="node-a",status="false"} 0
kube_node_status_condition{condition="Ready",node="node-a",status="true"} 1
kube_node_status_condition{condition="Ready",node="node-a",status="unknown"} 0
`
	if err := testutil.GatherAndCompare(te.reg, strings.NewReader(want), "kube_node_status_condition", "kube_pod_container_status_waiting_reason"); err != nil {
		t.Error(err)
	}
	// Three scrapes so far (two above, one here); the drops are logged once.
	if _, err := te.reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(logs.String(), "dropped series"); got != 1 {
		t.Errorf("logged the drops %d times, want once:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "count=4") {
		t.Errorf("log does not count 3 duplicate condition series and 1 bad reason:\n%s", logs.String())
	}
}

func TestResourceSample(t *testing.T) {
	for _, tc := range []struct {
		name, qty  string
		res, unit  string
		v          float64
		wantSeries bool
	}{
		{"cpu", "1500m", "cpu", "core", 1.5, true},
		{"memory", "1Gi", "memory", "byte", 1 << 30, true},
		{"ephemeral-storage", "1k", "ephemeral_storage", "byte", 1000, true},
		{"hugepages-2Mi", "4Mi", "hugepages_2Mi", "byte", 4 << 20, true},
		{"pods", "110", "pods", "integer", 110, true},
		{"nvidia.com/gpu", "2", "nvidia_com_gpu", "integer", 2, true},
		{"kubernetes.io/batch-cpu", "1", "", "", 0, false},
		{"requests.example.com/foo", "1", "", "", 0, false},
	} {
		res, unit, v, ok := resourceSample(corev1.ResourceName(tc.name), resource.MustParse(tc.qty))
		if ok != tc.wantSeries || res != tc.res || unit != tc.unit || v != tc.v {
			t.Errorf("resourceSample(%s, %s) = %q %q %v %v, want %q %q %v %v", tc.name, tc.qty, res, unit, v, ok, tc.res, tc.unit, tc.v, tc.wantSeries)
		}
	}
}

// syncBuffer is a bytes.Buffer that goroutines may write while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// exposition renders everything g gathers in the text format.
func exposition(t *testing.T, g prometheus.Gatherer) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}
