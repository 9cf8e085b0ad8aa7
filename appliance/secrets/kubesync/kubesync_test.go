package kubesync

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gluebox/gluebox/appliance/secrets"
)

const ns = "app-prod"

// newTestSyncer wires a real store in a temp dir to a fake clientset holding objs.
func newTestSyncer(t *testing.T, objs ...runtime.Object) (*Syncer, *secrets.Store, *fake.Clientset) {
	t.Helper()
	st, err := secrets.Open(secrets.StoreOptions{Dir: filepath.Join(t.TempDir(), "s")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := fake.NewClientset(objs...)
	s, err := New(cs, st, Config{Resync: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, cs
}

func set(t *testing.T, st *secrets.Store, path string, kv ...string) {
	t.Helper()
	m := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = []byte(kv[i+1])
	}
	if _, err := st.Set(context.Background(), path, m, "test"); err != nil {
		t.Fatal(err)
	}
}

func deployment(name string, spec corev1.PodSpec) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}
}

func envFromSpec(secret string) corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}}}}
}

func templateHash(t *testing.T, cs *fake.Clientset, kind, name, secret string) string {
	t.Helper()
	ctx := context.Background()
	var ann map[string]string
	switch kind {
	case "Deployment":
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ann = d.Spec.Template.Annotations
	case "StatefulSet":
		d, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ann = d.Spec.Template.Annotations
	case "DaemonSet":
		d, err := cs.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ann = d.Spec.Template.Annotations
	}
	return ann[TemplateAnnotation(secret)]
}

func secretData(t *testing.T, cs *fake.Clientset, name string) map[string]string {
	t.Helper()
	sec, err := cs.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range sec.Data {
		out[k] = string(v)
	}
	return out
}

func TestSyncCreatesSecretAndRollsConsumers(t *testing.T) {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-secrets"}}}}}}}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns}, Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "i", Env: []corev1.EnvVar{{Name: "T", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app-secrets"}, Key: "TOKEN"}}}}}}}}}}
	s, st, cs := newTestSyncer(t, deployment("web", envFromSpec("app-secrets")), deployment("other", envFromSpec("unrelated")), sts, ds)
	ctx := context.Background()
	set(t, st, "secret/app", "TOKEN", "one", "URL", "u")
	if err := s.SetBindings([]Binding{{Namespace: ns, Name: "app-secrets", Path: "secret/app"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"TOKEN": "one", "URL": "u"}, secretData(t, cs, "app-secrets")); diff != "" {
		t.Errorf("Secret data (-want +got):\n%s", diff)
	}
	first := templateHash(t, cs, "Deployment", "web", "app-secrets")
	if first == "" {
		t.Fatal("consumer Deployment not annotated")
	}
	for _, kind := range [][2]string{{"StatefulSet", "db"}, {"DaemonSet", "agent"}} {
		if got := templateHash(t, cs, kind[0], kind[1], "app-secrets"); got != first {
			t.Errorf("%s/%s hash = %q, want %q", kind[0], kind[1], got, first)
		}
	}
	if got := templateHash(t, cs, "Deployment", "other", "app-secrets"); got != "" {
		t.Errorf("unrelated Deployment was annotated: %q", got)
	}

	// Nothing changed: nothing is written.
	before := len(cs.Actions())
	if err := s.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions()[before:] {
		if a.GetVerb() != "get" && a.GetVerb() != "list" {
			t.Errorf("a sync without changes did %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}

	set(t, st, "secret/app", "TOKEN", "two")
	if err := s.Sync(ctx, []string{"secret/app"}); err != nil {
		t.Fatal(err)
	}
	if got := secretData(t, cs, "app-secrets")["TOKEN"]; got != "two" {
		t.Errorf("Secret TOKEN = %q, want two", got)
	}
	second := templateHash(t, cs, "Deployment", "web", "app-secrets")
	if second == first || second == "" {
		t.Errorf("Deployment hash %q did not change from %q", second, first)
	}
	st0 := s.Status()
	if len(st0) != 1 || st0[0].Error != "" || st0[0].Hash != second || len(st0[0].Rolled) != 3 {
		t.Errorf("status = %+v", st0)
	}
}

func TestRunReactsToStoreChanges(t *testing.T) {
	s, st, cs := newTestSyncer(t, deployment("web", envFromSpec("app-secrets")))
	set(t, st, "secret/app", "TOKEN", "one")
	if err := s.SetBindings([]Binding{{Namespace: ns, Name: "app-secrets", Path: "secret/app", Keys: map[string]string{"api-token": "TOKEN"}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, func() bool {
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "app-secrets", metav1.GetOptions{})
		return err == nil && string(sec.Data["api-token"]) == "one"
	})
	set(t, st, "secret/app", "TOKEN", "rotated")
	waitFor(t, func() bool {
		sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "app-secrets", metav1.GetOptions{})
		return err == nil && string(sec.Data["api-token"]) == "rotated" && sec.Annotations[RolledAnnotation] == sec.Annotations[HashAnnotation]
	})
	if diff := cmp.Diff(map[string]string{"api-token": "rotated"}, secretData(t, cs, "app-secrets")); diff != "" {
		t.Errorf("mapped keys only (-want +got):\n%s", diff)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s (the syncer should react to the store notification)")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSyncErrors(t *testing.T) {
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hand-made", Namespace: ns}, Data: map[string][]byte{"x": []byte("keep me")}}
	s, st, cs := newTestSyncer(t, foreign)
	set(t, st, "secret/app", "A", "1")
	tests := []struct {
		name string
		b    Binding
		want string
	}{
		{"missing path", Binding{Namespace: ns, Name: "s1", Path: "secret/missing"}, "does not exist yet"},
		{"missing mapped key", Binding{Namespace: ns, Name: "s2", Path: "secret/app", Keys: map[string]string{"b": "B"}}, "key B is not in secret/app (keys there: A)"},
		{"not ours", Binding{Namespace: ns, Name: "hand-made", Path: "secret/app"}, "is not managed by gluebox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetBindings([]Binding{tt.b}); err != nil {
				t.Fatal(err)
			}
			err := s.Sync(context.Background(), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Sync = %v, want %q", err, tt.want)
			}
			if st := s.Status(); len(st) != 1 || !strings.Contains(st[0].Error, tt.want) {
				t.Errorf("status = %+v", st)
			}
		})
	}
	if got := secretData(t, cs, "hand-made"); got["x"] != "keep me" || len(got) != 1 {
		t.Errorf("foreign Secret changed: %v", got)
	}
}

func TestSetBindingsValidates(t *testing.T) {
	s, _, _ := newTestSyncer(t)
	tests := []struct {
		name string
		bs   []Binding
		want string
	}{
		{"bad namespace", []Binding{{Namespace: "Bad_NS", Name: "s", Path: "secret/a"}}, "namespace"},
		{"bad name", []Binding{{Namespace: ns, Name: "UPPER", Path: "secret/a"}}, "Secret name"},
		{"bad path", []Binding{{Namespace: ns, Name: "s", Path: "vault/a"}}, `does not start with "secret/"`},
		{"conflict", []Binding{{Namespace: ns, Name: "s", Path: "secret/a"}, {Namespace: ns, Name: "s", Path: "secret/b"}}, "bound to both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetBindings(tt.bs); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SetBindings = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBindingsFromValues(t *testing.T) {
	tests := []struct {
		name    string
		values  map[string]any
		want    []Binding
		wantErr string
	}{
		{"none", map[string]any{"image": map[string]any{}}, nil, ""},
		{"disabled", map[string]any{"externalSecret": map[string]any{"enabled": false, "secrets": map[string]any{"a": map[string]any{"dataFrom": map[string]any{"key": "secret/a"}}}}}, nil, ""},
		{"glueops shape", map[string]any{"externalSecret": map[string]any{"enabled": true, "secrets": map[string]any{
			"app-secrets": map[string]any{"dataFrom": map[string]any{"key": "secret/app"}},
			"vault-only":  map[string]any{"dataFrom": map[string]any{"key": "kv/other"}},
		}}}, []Binding{{Namespace: ns, Name: "app-secrets", Path: "secret/app"}}, ""},
		{"no key", map[string]any{"externalSecret": map[string]any{"secrets": map[string]any{"a": map[string]any{"dataFrom": map[string]any{}}}}}, nil, "externalSecret.secrets.a.dataFrom.key must be a string"},
		{"bad path", map[string]any{"externalSecret": map[string]any{"secrets": map[string]any{"a": map[string]any{"dataFrom": map[string]any{"key": "secret/a b"}}}}}, nil, "externalSecret.secrets.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BindingsFromValues(ns, tt.values)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateAnnotation(t *testing.T) {
	long := strings.Repeat("a", 100)
	if got := TemplateAnnotation("app"); got != "secret.gluebox.dev/app" {
		t.Errorf("short name: %q", got)
	}
	got := TemplateAnnotation(long)
	if name := strings.TrimPrefix(got, TemplateAnnotPrefix); len(name) > 63 {
		t.Errorf("long name gives a %d-character annotation name", len(name))
	}
	if TemplateAnnotation(long) == TemplateAnnotation(long[:99]+"b") {
		t.Error("different long names share an annotation")
	}
}
