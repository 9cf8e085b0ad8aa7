// Package kubesync keeps Kubernetes Secrets in step with paths of the gluebox secret store and
// rolls the workloads that use them when their content changes. It owns only the Secrets it
// created (label app.kubernetes.io/managed-by=gluebox-secrets) and one pod-template annotation
// per synced Secret on the Deployments, StatefulSets and DaemonSets that reference it.
//
// It also owns which bindings there are (bindings.go): the ones declared by hand with `gluebox
// secret bind`, kept in a JSON file, united with the ones the GitOps engine declares from apps'
// externalSecret values; and their routes of the local API.
//
// Lifecycle: New, then NewBindings (which hands the Syncer the bindings from the file; the
// engine's arrive any time through Bindings.SetGitOps), then Run until its context ends (nil on
// cancel). Run reacts to store change notifications at once and resyncs everything
// periodically. The server wiring imports it, and the typed client for its API types.
package kubesync

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/gluebox/gluebox/appliance/secrets"
)

// Labels and annotations gluebox puts on what it manages.
const (
	ManagedByLabel      = "app.kubernetes.io/managed-by"
	ManagedByValue      = "gluebox-secrets"
	PathAnnotation      = "gluebox.dev/secret-path"
	HashAnnotation      = "gluebox.dev/content-hash"
	RolledAnnotation    = "gluebox.dev/rolled-hash"
	TemplateAnnotPrefix = "secret.gluebox.dev/"
	fieldManager        = "gluebox-secrets"
)

// Source is the part of the secret store the syncer reads.
type Source interface {
	Values(ctx context.Context, path string) (map[string][]byte, error)
	Subscribe() *secrets.Subscription
}

var _ Source = (*secrets.Store)(nil)

// Binding asks for the store path Path to be kept as Secret Name in Namespace.
type Binding struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Path      string `json:"path"`
	// Keys maps Secret data keys to store keys; empty means every store key under its own name.
	Keys map[string]string `json:"keys,omitempty"`
}

func (b Binding) id() string { return b.Namespace + "/" + b.Name }

// Validate says what is wrong with b, if anything.
func (b Binding) Validate() error {
	if errs := validation.IsDNS1123Label(b.Namespace); len(errs) > 0 {
		return fmt.Errorf("secret binding %s: namespace %q is invalid: %s", b.id(), b.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(b.Name); len(errs) > 0 {
		return fmt.Errorf("secret binding %s: Secret name %q is invalid: %s", b.id(), b.Name, strings.Join(errs, "; "))
	}
	if err := secrets.ValidatePath(b.Path); err != nil {
		return fmt.Errorf("secret binding %s: %w", b.id(), err)
	}
	for k, sk := range b.Keys {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return fmt.Errorf("secret binding %s: Secret key %q is invalid: %s", b.id(), k, strings.Join(errs, "; "))
		}
		if err := secrets.ValidateKey(b.Path, sk); err != nil {
			return fmt.Errorf("secret binding %s: %w", b.id(), err)
		}
	}
	return nil
}

// BindingStatus is the outcome of the last sync of one binding.
type BindingStatus struct {
	Binding
	LastSync time.Time `json:"last_sync,omitzero"`
	Hash     string    `json:"hash,omitempty"`
	Rolled   []string  `json:"rolled,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Config configures a Syncer.
type Config struct {
	// Resync is the period of a full resync; 0 means 1m.
	Resync time.Duration
}

// Syncer keeps Kubernetes Secrets in step with the store.
type Syncer struct {
	client kubernetes.Interface
	src    Source
	cfg    Config
	log    *slog.Logger

	// syncMu serialises syncs: the Run loop and callers of Sync (the API, after a new binding)
	// would otherwise race to create the same Secret.
	syncMu sync.Mutex

	mu       sync.Mutex
	bindings []Binding
	status   map[string]BindingStatus
	kick     chan struct{}
}

// New returns a Syncer; it does nothing until Run.
func New(client kubernetes.Interface, src Source, cfg Config, logger *slog.Logger) (*Syncer, error) {
	if client == nil || src == nil {
		return nil, errors.New("kubesync: a Kubernetes client and a secret store are required")
	}
	if cfg.Resync < 0 {
		return nil, fmt.Errorf("kubesync: Resync is %s: use 0 for the default (1m) or a positive duration", cfg.Resync)
	}
	if cfg.Resync == 0 {
		cfg.Resync = time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Syncer{client: client, src: src, cfg: cfg, log: logger.With("component", "secrets", "part", "kubesync"),
		status: map[string]BindingStatus{}, kick: make(chan struct{}, 1)}, nil
}

// SetBindings replaces the set of bindings and asks Run for a full sync. A Secret whose binding
// goes away is left in place (apps may still use it); pruning is the GitOps engine's job.
func (s *Syncer) SetBindings(bs []Binding) error {
	seen := map[string]string{}
	for _, b := range bs {
		if err := b.Validate(); err != nil {
			return err
		}
		if p, ok := seen[b.id()]; ok && p != b.Path {
			return fmt.Errorf("secret binding %s is bound to both %s and %s: keep one", b.id(), p, b.Path)
		}
		seen[b.id()] = b.Path
	}
	s.mu.Lock()
	s.bindings = append([]Binding(nil), bs...)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// Status returns the state of every binding, sorted by namespace/name.
func (s *Syncer) Status() []BindingStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BindingStatus, 0, len(s.bindings))
	for _, b := range s.bindings {
		st, ok := s.status[b.id()]
		if !ok {
			st = BindingStatus{Binding: b}
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id() < out[j].id() })
	return out
}

// Run syncs at once, then on every store change and every Resync, until ctx ends (nil). Stop it
// before closing the store: a store closed under a running Syncer is an error.
func (s *Syncer) Run(ctx context.Context) error {
	sub := s.src.Subscribe()
	defer sub.Close()
	t := time.NewTicker(s.cfg.Resync)
	defer t.Stop()
	s.syncLogged(ctx, nil)
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-sub.C():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("kubesync: the secret store was closed")
			}
			paths, all := sub.Take()
			if all {
				paths = nil
			}
			s.syncLogged(ctx, paths)
		case <-t.C:
			s.syncLogged(ctx, nil)
		case <-s.kick:
			s.syncLogged(ctx, nil)
		}
	}
}

func (s *Syncer) syncLogged(ctx context.Context, paths []string) {
	if err := s.Sync(ctx, paths); err != nil && ctx.Err() == nil {
		s.log.Warn("secret sync incomplete", "err", err)
	}
}

// Sync brings the bindings of the given store paths (all bindings when paths is nil) in step
// and returns the joined errors of the bindings that failed.
func (s *Syncer) Sync(ctx context.Context, paths []string) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	bs := append([]Binding(nil), s.bindings...)
	s.mu.Unlock()
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	var errs []error
	for _, b := range bs {
		if paths != nil && !want[b.Path] {
			continue
		}
		st := BindingStatus{Binding: b, LastSync: time.Now().UTC()}
		hash, rolled, err := s.syncOne(ctx, b)
		st.Hash, st.Rolled = hash, rolled
		if err != nil {
			st.Error = err.Error()
			errs = append(errs, err)
		}
		s.mu.Lock()
		s.status[b.id()] = st
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (s *Syncer) syncOne(ctx context.Context, b Binding) (string, []string, error) {
	values, err := s.src.Values(ctx, b.Path)
	if err != nil {
		if errors.Is(err, secrets.ErrNotFound) {
			return "", nil, fmt.Errorf("secret %s: store path %s does not exist yet (create it with `gluebox secret set %s KEY -`); the Secret is left as it is", b.id(), b.Path, b.Path)
		}
		return "", nil, fmt.Errorf("secret %s: cannot read %s: %w", b.id(), b.Path, err)
	}
	data := values
	if len(b.Keys) > 0 {
		data = map[string][]byte{}
		for k, sk := range b.Keys {
			v, ok := values[sk]
			if !ok {
				return "", nil, fmt.Errorf("secret %s: key %s is not in %s (keys there: %s)", b.id(), sk, b.Path, strings.Join(slices.Sorted(maps.Keys(values)), ", "))
			}
			data[k] = v
		}
	}
	hash := contentHash(data)
	secretsAPI := s.client.CoreV1().Secrets(b.Namespace)
	cur, err := secretsAPI.Get(ctx, b.Name, metav1.GetOptions{})
	rolledHash := ""
	switch {
	case apierrors.IsNotFound(err):
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: b.Name, Namespace: b.Namespace,
				Labels:      map[string]string{ManagedByLabel: ManagedByValue},
				Annotations: map[string]string{PathAnnotation: b.Path, HashAnnotation: hash},
			},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if _, err := secretsAPI.Create(ctx, sec, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
			return "", nil, fmt.Errorf("cannot create Secret %s: %w", b.id(), err)
		}
		s.log.Info("created Secret", "secret", b.id(), "path", b.Path, "keys", slices.Sorted(maps.Keys(data)))
	case err != nil:
		return "", nil, fmt.Errorf("cannot read Secret %s: %w", b.id(), err)
	default:
		if cur.Labels[ManagedByLabel] != ManagedByValue {
			return "", nil, fmt.Errorf("secret %s already exists and is not managed by gluebox (no label %s=%s): delete or rename it so gluebox can sync %s into it", b.id(), ManagedByLabel, ManagedByValue, b.Path)
		}
		rolledHash = cur.Annotations[RolledAnnotation]
		if cur.Annotations[HashAnnotation] != hash || !maps.EqualFunc(cur.Data, data, func(a, b []byte) bool { return string(a) == string(b) }) {
			upd := cur.DeepCopy()
			upd.Data, upd.StringData = data, nil
			if upd.Annotations == nil {
				upd.Annotations = map[string]string{}
			}
			upd.Annotations[PathAnnotation] = b.Path
			upd.Annotations[HashAnnotation] = hash
			if _, err := secretsAPI.Update(ctx, upd, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
				return "", nil, fmt.Errorf("cannot update Secret %s: %w", b.id(), err)
			}
			s.log.Info("updated Secret", "secret", b.id(), "path", b.Path, "keys", slices.Sorted(maps.Keys(data)))
		} else if rolledHash == hash {
			return hash, nil, nil
		}
	}
	if rolledHash == hash {
		return hash, nil, nil
	}
	// The content differs from what workloads last rolled to (or an earlier roll was
	// interrupted): roll every workload that uses the Secret, then record that.
	rolled, err := s.rollWorkloads(ctx, b, hash)
	if err != nil {
		return hash, rolled, err
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{RolledAnnotation: hash}}})
	if _, err := secretsAPI.Patch(ctx, b.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return hash, rolled, fmt.Errorf("cannot mark Secret %s as rolled out: %w", b.id(), err)
	}
	return hash, rolled, nil
}

// rollWorkloads sets the Secret's content hash as a pod-template annotation on every
// Deployment, StatefulSet and DaemonSet in the namespace that references the Secret, which makes
// their controllers replace the pods.
func (s *Syncer) rollWorkloads(ctx context.Context, b Binding, hash string) ([]string, error) {
	key := TemplateAnnotation(b.Name)
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: hash}}}}})
	apps := s.client.AppsV1()
	opts := metav1.PatchOptions{FieldManager: fieldManager}
	var rolled []string
	var errs []error
	roll := func(kind, name string, tmpl *corev1.PodTemplateSpec, do func() error) {
		if !UsesSecret(&tmpl.Spec, b.Name) || tmpl.Annotations[key] == hash {
			return
		}
		if err := do(); err != nil {
			errs = append(errs, fmt.Errorf("cannot roll %s %s/%s: %w", kind, b.Namespace, name, err))
			return
		}
		rolled = append(rolled, kind+"/"+name)
		s.log.Info("rolling workload for changed Secret", "secret", b.id(), "workload", kind+"/"+name)
	}
	deps, err := apps.Deployments(b.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("cannot list Deployments in %s: %w", b.Namespace, err)
	}
	for _, d := range deps.Items {
		roll("Deployment", d.Name, &d.Spec.Template, func() error {
			_, err := apps.Deployments(b.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, opts)
			return err
		})
	}
	sts, err := apps.StatefulSets(b.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return rolled, fmt.Errorf("cannot list StatefulSets in %s: %w", b.Namespace, err)
	}
	for _, d := range sts.Items {
		roll("StatefulSet", d.Name, &d.Spec.Template, func() error {
			_, err := apps.StatefulSets(b.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, opts)
			return err
		})
	}
	dss, err := apps.DaemonSets(b.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return rolled, fmt.Errorf("cannot list DaemonSets in %s: %w", b.Namespace, err)
	}
	for _, d := range dss.Items {
		roll("DaemonSet", d.Name, &d.Spec.Template, func() error {
			_, err := apps.DaemonSets(b.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, opts)
			return err
		})
	}
	return rolled, errors.Join(errs...)
}

// TemplateAnnotation is the pod-template annotation that carries the content hash of Secret
// name. Annotation names are limited to 63 characters, so long Secret names are shortened with
// a hash suffix.
func TemplateAnnotation(name string) string {
	if len(name) <= 63 {
		return TemplateAnnotPrefix + name
	}
	sum := sha256.Sum256([]byte(name))
	return TemplateAnnotPrefix + strings.TrimRight(name[:54], ".-") + "-" + hex.EncodeToString(sum[:4])
}

// UsesSecret reports whether a pod spec references Secret name through env, envFrom or a volume.
func UsesSecret(spec *corev1.PodSpec, name string) bool {
	containers := append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	return false
}

// contentHash is a stable hash of a Secret's data.
func contentHash(data map[string][]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, k := range slices.Sorted(maps.Keys(data)) {
		binary.BigEndian.PutUint64(n[:], uint64(len(k)))
		h.Write(n[:])
		h.Write([]byte(k))
		binary.BigEndian.PutUint64(n[:], uint64(len(data[k])))
		h.Write(n[:])
		h.Write(data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// BindingsFromValues reads the GlueOps app chart's externalSecret block from merged Helm values
// of an environment running in namespace:
//
//	externalSecret:
//	  enabled: true
//	  secrets:
//	    <secret-name>:
//	      dataFrom:
//	        key: secret/<app>
//
// Entries whose key is not a gluebox path ("secret/...") are left to other tools.
func BindingsFromValues(namespace string, values map[string]any) ([]Binding, error) {
	es, ok := values["externalSecret"].(map[string]any)
	if !ok {
		return nil, nil
	}
	if en, ok := es["enabled"].(bool); ok && !en {
		return nil, nil
	}
	raw, ok := es["secrets"]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("externalSecret.secrets must be a map of secret name to settings, not %T", raw)
	}
	var out []Binding
	for _, name := range slices.Sorted(maps.Keys(list)) {
		entry, ok := list[name].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("externalSecret.secrets.%s must be a map with dataFrom.key, not %T", name, list[name])
		}
		df, ok := entry["dataFrom"].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("externalSecret.secrets.%s.dataFrom is missing: set dataFrom.key: secret/<app>", name)
		}
		key, ok := df["key"].(string)
		if !ok || key == "" {
			return nil, fmt.Errorf("externalSecret.secrets.%s.dataFrom.key must be a string such as secret/<app>", name)
		}
		if !strings.HasPrefix(key, "secret/") {
			continue
		}
		b := Binding{Namespace: namespace, Name: name, Path: key}
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("externalSecret.secrets.%s: %w", name, err)
		}
		out = append(out, b)
	}
	return out, nil
}
