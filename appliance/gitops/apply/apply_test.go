package apply

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gluebox/gluebox/appliance/gitops/state"
	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/paths"
)

// startAPIServer runs kine and kube-apiserver in-process (gluebox's own components, no
// controllers, no kubelet) on a free port of 127.0.0.1 and returns an admin client config.
// Everything stops when the test ends. One per test binary: the apiserver registers
// process-wide metrics.
func startAPIServer(t *testing.T) *rest.Config {
	t.Helper()
	l, err := paths.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The advertised address only names the "kubernetes" Service's endpoint, which must not be
	// loopback; nothing dials it (TEST-NET-1). Clients use 127.0.0.1.
	netw := kube.ClusterNetwork{NodeName: "apply-test", NodeIP: net.ParseIP("192.0.2.1"), APIPort: testbin.FreePort(t)}
	netw.Defaults()
	certs, err := kube.EnsureCerts(l, netw)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	ds := kube.NewDatastore(l.DatastoreDir(), "", filepath.Join(t.TempDir(), "kine.log"), log)
	api := &kube.APIServer{Certs: certs, Net: netw, Datastore: ds, BindAddress: "127.0.0.1", Log: log}
	dsDone, apiDone := make(chan error, 1), make(chan error, 1)
	t.Cleanup(func() {
		cancel()
		// Like gluebox's supervisor, give the apiserver its StopTimeout and then go on: its
		// in-flight requests drain in the background.
		select {
		case err := <-apiDone:
			if err != nil {
				t.Errorf("kube-apiserver: %v", err)
			}
		case <-time.After(api.StopTimeout()):
			t.Logf("kube-apiserver still stopping after %s; going on", api.StopTimeout())
		}
		select {
		case err := <-dsDone:
			if err != nil {
				t.Errorf("kine: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("kine did not stop within 30s")
		}
	})
	go func() { dsDone <- ds.Run(ctx) }()
	if err := ds.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { apiDone <- api.Run(ctx) }()
	readyCtx, readyCancel := context.WithTimeout(ctx, 90*time.Second)
	defer readyCancel()
	ready := make(chan error, 1)
	go func() { ready <- api.WaitReady(readyCtx) }()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case err := <-apiDone:
		apiDone <- err // for the cleanup
		t.Fatalf("kube-apiserver stopped before it was ready: %v", err)
	}
	cfg, err := kube.RESTConfig(certs.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func configMap(ns, name string, data map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"data":     data,
	}}
}

// TestApplierOnARealAPIServer: what leaves the render is deleted one object at a time (not
// the namespace), what was changed by hand is put back, and objects without the
// environment's owner labels are never touched, even when an inventory names them.
func TestApplierOnARealAPIServer(t *testing.T) {
	cfg := startAPIServer(t)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "shop-prod"
	set := Set{Owner: "shop.prod", Namespace: ns, NamespaceLabels: map[string]string{"app": "shop"}, Objects: []*unstructured.Unstructured{
		configMap(ns, "keep", map[string]any{"a": "1"}),
		configMap(ns, "gone", map[string]any{"b": "2"}),
		configMap(ns, "drift", map[string]any{"color": "blue"}),
	}}
	first, err := a.Apply(ctx, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ConfigMap/shop-prod/drift", "ConfigMap/shop-prod/gone", "ConfigMap/shop-prod/keep", "Namespace/shop-prod"}
	if diff := cmp.Diff(want, refStrings(first.Inventory)); diff != "" {
		t.Errorf("inventory of the first apply (-want +got):\n%s", diff)
	}
	if len(first.Created) != 4 || len(first.Pruned) != 0 {
		t.Errorf("first apply created %v and pruned %v, want the 4 objects created", first.Created, first.Pruned)
	}
	cm := func(name string) (*corev1.ConfigMap, error) {
		return cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	}

	// By hand: one of gluebox's objects changed, one object of someone else's (no owner
	// labels) and one of another environment (its owner labels), both named in the inventory
	// gluebox passes back, as a stale or tampered inventory could.
	drift, err := cm("drift")
	if err != nil {
		t.Fatal(err)
	}
	drift.Data["color"] = "red"
	if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, drift, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "foreign"}, Data: map[string]string{"mine": "yes"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "neighbour", Labels: a.rm.GetOwnerLabels("shop.staging", ns)}, Data: map[string]string{"env": "staging"}},
	} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	foreign := state.ObjRef{Version: "v1", Kind: "ConfigMap", Namespace: ns, Name: "foreign"}
	neighbour := state.ObjRef{Version: "v1", Kind: "ConfigMap", Namespace: ns, Name: "neighbour"}

	// The next render drops "gone".
	set.Objects = []*unstructured.Unstructured{set.Objects[0], set.Objects[2]}
	second, err := a.Apply(ctx, set, append(first.Inventory, foreign, neighbour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap/shop-prod/gone"}, second.Pruned); diff != "" {
		t.Errorf("pruned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ConfigMap/shop-prod/drift"}, second.Configured); diff != "" {
		t.Errorf("configured (-want +got):\n%s", diff)
	}
	if _, err := cm("gone"); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap gone after it left the render: %v, want not found", err)
	}
	if got, err := cm("drift"); err != nil || got.Data["color"] != "blue" {
		t.Errorf("ConfigMap drift after the apply = %v, %v; want color blue put back", got, err)
	}
	for name, data := range map[string]map[string]string{"keep": {"a": "1"}, "foreign": {"mine": "yes"}, "neighbour": {"env": "staging"}} {
		got, err := cm(name)
		if err != nil {
			t.Errorf("ConfigMap %s: %v", name, err)
			continue
		}
		if diff := cmp.Diff(data, got.Data); diff != "" {
			t.Errorf("ConfigMap %s (-want +got):\n%s", name, diff)
		}
		if name == "foreign" && len(got.Labels) != 0 {
			t.Errorf("ConfigMap foreign got labels %v", got.Labels)
		}
	}
	if n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || n.DeletionTimestamp != nil || n.Labels["app"] != "shop" {
		t.Errorf("namespace after pruning one object = %v, %v; want it kept with its labels", n, err)
	}

	// Delete only removes what carries the environment's owner labels.
	deleted, err := a.Delete(ctx, Set{Owner: set.Owner, Namespace: ns}, []state.ObjRef{foreign, neighbour, {Version: "v1", Kind: "ConfigMap", Namespace: ns, Name: "keep"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap/shop-prod/keep"}, deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	for _, name := range []string{"foreign", "neighbour"} {
		if _, err := cm(name); err != nil {
			t.Errorf("ConfigMap %s after Delete: %v, want it untouched", name, err)
		}
	}
	if _, err := cm("keep"); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap keep after Delete: %v, want not found", err)
	}

	if _, err := a.Apply(ctx, Set{Owner: "x", Namespace: ns, Objects: []*unstructured.Unstructured{configMap("elsewhere", "c", nil)}}, nil); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Apply of an object outside the environment's namespace = %v, want an error", err)
	}
}

func refStrings(refs []state.ObjRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.String())
	}
	return out
}
