// Package apply puts one environment's rendered objects into the cluster with server-side
// apply (github.com/fluxcd/pkg/ssa): namespaces and CRDs first, then the rest; objects the
// previous apply created but this one does not are pruned; health is judged with kstatus.
//
// It owns the field manager "gluebox" and the owner labels gluebox.dev/name and
// gluebox.dev/namespace on what it applies, and deletes only objects carrying them. What to
// apply, and the inventory of what was applied before, come from the caller (the GitOps
// engine keeps them in appliance/gitops/state).
//
// Lifecycle: New, then use from any goroutine; nothing to close. Only the GitOps engine
// imports it.
package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/gluebox/gluebox/appliance/gitops/state"
)

// FieldManager is the server-side apply field manager of everything gluebox deploys.
const FieldManager = "gluebox"

// ownerGroup prefixes the owner labels <group>/name and <group>/namespace.
const ownerGroup = "gluebox.dev"

// Set is one environment to apply.
type Set struct {
	// Owner names the environment in the owner labels (e.g. "<app>.<env>").
	Owner string
	// Namespace is the environment's namespace; Apply creates it first, with NamespaceLabels.
	Namespace       string
	NamespaceLabels map[string]string
	// Objects are the rendered objects, all in Namespace. Apply does not modify them.
	Objects []*unstructured.Unstructured
}

// Result says what one Apply did.
type Result struct {
	// Inventory is every object now owned by the environment, the namespace included.
	Inventory []state.ObjRef
	// Created and Configured list "Kind/namespace/name" of objects that were missing or
	// differed from the desired state; Pruned those deleted because they left the set.
	Created    []string
	Configured []string
	Pruned     []string
}

// Applier applies environments to one cluster.
type Applier struct {
	rm *ssa.ResourceManager
}

// New returns an Applier talking to the API server of cfg.
func New(cfg *rest.Config) (*Applier, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("apply: cannot build HTTP client: %w", err)
	}
	return newApplier(cfg, hc)
}

func newApplier(cfg *rest.Config, hc *http.Client) (*Applier, error) {
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("apply: cannot build REST mapper: %w", err)
	}
	c, err := client.New(cfg, client.Options{HTTPClient: hc, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("apply: cannot build client: %w", err)
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	rm := ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: ownerGroup})
	rm.SetConcurrency(4)
	return &Applier{rm: rm}, nil
}

func (a *Applier) ownerLabels(set Set) map[string]string {
	return a.rm.GetOwnerLabels(set.Owner, set.Namespace)
}

// Apply applies set and prunes what previous (the last Result.Inventory) had and set no
// longer has. On an apply error nothing is pruned and the error names the object.
func (a *Applier) Apply(ctx context.Context, set Set, previous []state.ObjRef) (Result, error) {
	if set.Owner == "" || set.Namespace == "" {
		return Result{}, errors.New("apply: set needs an owner and a namespace")
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(set.Namespace)
	ns.SetLabels(copyMap(set.NamespaceLabels))

	objs := []*unstructured.Unstructured{ns}
	for _, o := range set.Objects {
		if o.GetNamespace() != set.Namespace {
			return Result{}, fmt.Errorf("apply: %s/%s is in namespace %q, not the environment's %q",
				o.GetKind(), o.GetName(), o.GetNamespace(), set.Namespace)
		}
		objs = append(objs, o.DeepCopy())
	}
	a.rm.SetOwnerLabels(objs, set.Owner, set.Namespace)

	opts := ssa.DefaultApplyOptions()
	opts.Force = true // recreate objects whose immutable fields changed (e.g. a selector)
	opts.WaitInterval = 500 * time.Millisecond
	opts.WaitTimeout = 30 * time.Second
	cs, err := a.rm.ApplyAllStaged(ctx, objs, opts)
	var res Result
	if cs != nil {
		for _, e := range cs.Entries {
			switch e.Action {
			case ssa.CreatedAction:
				res.Created = append(res.Created, e.Subject)
			case ssa.ConfiguredAction:
				res.Configured = append(res.Configured, e.Subject)
			}
		}
	}
	if err != nil {
		return res, fmt.Errorf("cannot apply %s: %w", set.Namespace, err)
	}

	res.Inventory = inventory(objs)
	stale := difference(previous, res.Inventory)
	if len(stale) > 0 {
		pruned, err := a.delete(ctx, set, stale)
		res.Pruned = pruned
		if err != nil {
			// Keep the stale objects in the inventory so the next sync retries them.
			res.Inventory = append(res.Inventory, stale...)
			return res, fmt.Errorf("cannot prune from %s: %w", set.Namespace, err)
		}
	}
	return res, nil
}

// toObjects turns inventory references back into objects (name and kind only), for Delete.
func toObjects(refs []state.ObjRef) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, 0, len(refs))
	for _, r := range refs {
		o := &unstructured.Unstructured{}
		o.SetGroupVersionKind(schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind})
		o.SetNamespace(r.Namespace)
		o.SetName(r.Name)
		out = append(out, o)
	}
	return out
}

// Delete removes every object of inventory that still carries set's owner labels, the
// namespace last, and returns what it deleted. Only Owner and Namespace of set are used.
func (a *Applier) Delete(ctx context.Context, set Set, inventory []state.ObjRef) ([]string, error) {
	return a.delete(ctx, set, inventory)
}

func (a *Applier) delete(ctx context.Context, set Set, refs []state.ObjRef) ([]string, error) {
	var nsRefs, rest []state.ObjRef
	for _, r := range refs {
		if r.Kind == "Namespace" && r.Group == "" {
			nsRefs = append(nsRefs, r)
		} else {
			rest = append(rest, r)
		}
	}
	opts := ssa.DefaultDeleteOptions()
	opts.Inclusions = a.ownerLabels(set)
	var deleted []string
	for _, group := range [][]state.ObjRef{rest, nsRefs} {
		if len(group) == 0 {
			continue
		}
		cs, err := a.rm.DeleteAll(ctx, toObjects(group), opts)
		if cs != nil {
			for _, e := range cs.Entries {
				if e.Action == ssa.DeletedAction {
					deleted = append(deleted, e.Subject)
				}
			}
		}
		if err != nil {
			return deleted, err
		}
	}
	return deleted, nil
}

// Wait blocks until every object of inventory is healthy (kstatus Current: Deployments rolled
// out and available, pods Ready, PVCs bound…), an object fails, or timeout passes. The error
// names the objects that are not healthy and why.
func (a *Applier) Wait(ctx context.Context, inventory []state.ObjRef, timeout time.Duration) error {
	var set object.ObjMetadataSet
	for _, r := range inventory {
		set = append(set, object.ObjMetadata{
			GroupKind: schema.GroupKind{Group: r.Group, Kind: r.Kind},
			Namespace: r.Namespace,
			Name:      r.Name,
		})
	}
	return a.rm.WaitForSetWithContext(ctx, set, ssa.WaitOptions{Interval: time.Second, Timeout: timeout, FailFast: true})
}

func inventory(objs []*unstructured.Unstructured) []state.ObjRef {
	out := make([]state.ObjRef, 0, len(objs))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		out = append(out, state.ObjRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// difference is what old has and new does not, compared by group, kind, namespace and name.
func difference(old, new []state.ObjRef) []state.ObjRef {
	key := func(r state.ObjRef) string { return r.Group + "|" + r.Kind + "|" + r.Namespace + "|" + r.Name }
	keep := map[string]bool{}
	for _, r := range new {
		keep[key(r)] = true
	}
	var out []state.ObjRef
	for _, r := range old {
		if !keep[key(r)] {
			out = append(out, r)
		}
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
