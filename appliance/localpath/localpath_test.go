package localpath

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// newTestProvisioner returns a Provisioner for node "node-1" over a fresh storage dir; it
// needs no API client for VolumeDir, Provision and Delete.
func newTestProvisioner(t *testing.T) *Provisioner {
	t.Helper()
	return &Provisioner{Dir: filepath.Join(t.TempDir(), "storage"), NodeName: "node-1", Log: slog.New(slog.DiscardHandler)}
}

func provisionOptions(pvName, ns, claim, node string) controller.ProvisionOptions {
	return controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{
			ObjectMeta:  metav1.ObjectMeta{Name: StorageClassName},
			Provisioner: ProvisionerName,
		},
		PVName: pvName,
		PVC: &v1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: ns},
			Spec: v1.PersistentVolumeClaimSpec{
				AccessModes: []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
				VolumeMode:  ptr.To(v1.PersistentVolumeFilesystem),
				Resources: v1.VolumeResourceRequirements{Requests: v1.ResourceList{
					v1.ResourceStorage: resource.MustParse("2Gi"),
				}},
			},
		},
		SelectedNodeName: node,
	}
}

func TestVolumeDir(t *testing.T) {
	p := newTestProvisioner(t)
	for _, tc := range []struct {
		name              string
		pv, ns, claim     string
		want, wantErrPart string
	}{
		{"plain", "pvc-123", "default", "data", "pvc-123_default_data", ""},
		{"dots and dashes", "pvc-1.2", "my-app", "db-0", "pvc-1.2_my-app_db-0", ""},
		{"parent in claim", "pvc-1", "default", "../x", "", `"../x"`},
		{"parent as namespace", "pvc-1", "..", "data", "", `".."`},
		{"slash", "pvc-1", "default", "a/b", "", `"a/b"`},
		{"upper case", "pvc-1", "Default", "data", "", `"Default"`},
		{"empty", "", "default", "data", "", `""`},
		{"leading dot", "pvc-1", "default", ".hidden", "", `".hidden"`},
		{"trailing dash", "pvc-1", "default", "data-", "", `"data-"`},
		{"underscore would be ambiguous", "pvc_1", "default", "data", "", `"pvc_1"`},
		{"absolute", "pvc-1", "default", "/etc", "", `"/etc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.VolumeDir(tc.pv, tc.ns, tc.claim)
			if tc.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
					t.Fatalf("VolumeDir = %q, %v; want an error naming %s", got, err, tc.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(p.Dir, tc.want); got != want {
				t.Errorf("VolumeDir = %q, want %q", got, want)
			}
		})
	}
}

func TestProvision(t *testing.T) {
	p := newTestProvisioner(t)
	for _, tc := range []struct {
		name, node string
		reclaim    *v1.PersistentVolumeReclaimPolicy
		want       v1.PersistentVolumeReclaimPolicy
	}{
		{"no node selected, default reclaim", "", nil, v1.PersistentVolumeReclaimDelete},
		{"this node, retain", "node-1", ptr.To(v1.PersistentVolumeReclaimRetain), v1.PersistentVolumeReclaimRetain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := provisionOptions("pvc-"+strings.ReplaceAll(tc.node+"x", "-", ""), "default", "data", tc.node)
			opts.StorageClass.ReclaimPolicy = tc.reclaim
			pv, state, err := p.Provision(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if state != controller.ProvisioningFinished {
				t.Errorf("state = %v", state)
			}
			dir := filepath.Join(p.Dir, opts.PVName+"_default_data")
			st, err := os.Stat(dir)
			if err != nil || !st.IsDir() {
				t.Fatalf("volume dir not created: %v", err)
			}
			if st.Mode().Perm() != 0o777 {
				t.Errorf("volume dir mode = %v, want 0777 so pods of any user can write", st.Mode().Perm())
			}
			want := &v1.PersistentVolume{
				ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
				Spec: v1.PersistentVolumeSpec{
					PersistentVolumeReclaimPolicy: tc.want,
					AccessModes:                   []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
					VolumeMode:                    ptr.To(v1.PersistentVolumeFilesystem),
					Capacity:                      v1.ResourceList{v1.ResourceStorage: resource.MustParse("2Gi")},
					PersistentVolumeSource: v1.PersistentVolumeSource{
						HostPath: &v1.HostPathVolumeSource{Path: dir, Type: ptr.To(v1.HostPathDirectoryOrCreate)},
					},
					NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
						MatchExpressions: []v1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: v1.NodeSelectorOpIn, Values: []string{"node-1"}}},
					}}}},
				},
			}
			if diff := cmp.Diff(want, pv, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
				t.Errorf("PV (-want +got)\n%s", diff)
			}
		})
	}
}

func TestProvisionRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts controller.ProvisionOptions
		want string
	}{
		{"other node", provisionOptions("pvc-1", "default", "data", "node-2"), "wants node node-2, this provisioner serves node-1"},
		{"unsafe claim name", provisionOptions("pvc-1", "default", "../../etc", ""), `"../../etc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProvisioner(t)
			pv, _, err := p.Provision(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Provision = %v, %v; want an error containing %q", pv, err, tc.want)
			}
			if _, err := os.Stat(p.Dir); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(p.Dir)
				if len(entries) > 0 {
					t.Errorf("a refused claim left %d entries in the storage dir", len(entries))
				}
			}
		})
	}
}

func hostPathPV(name, path string) *v1.PersistentVolume {
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeSpec{PersistentVolumeSource: v1.PersistentVolumeSource{
			HostPath: &v1.HostPathVolumeSource{Path: path},
		}},
	}
}

func TestDelete(t *testing.T) {
	p := newTestProvisioner(t)
	pv, _, err := p.Provision(context.Background(), provisionOptions("pvc-1", "default", "data", ""))
	if err != nil {
		t.Fatal(err)
	}
	dir := pv.Spec.HostPath.Path
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("volume dir still there after Delete: %v", err)
	}
	if _, err := os.Stat(p.Dir); err != nil {
		t.Errorf("Delete removed the storage dir itself: %v", err)
	}
	// Deleting a volume whose dir is already gone is fine (the controller retries deletes).
	if err := p.Delete(context.Background(), pv); err != nil {
		t.Errorf("second Delete = %v", err)
	}
}

func TestDeleteRefuses(t *testing.T) {
	p := newTestProvisioner(t)
	outside := t.TempDir()
	nested := filepath.Join(p.Dir, "pvc-1_default_data", "sub")
	for _, d := range []string{outside, nested} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		pv   *v1.PersistentVolume
		want string
	}{
		{"not a hostPath volume", &v1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "nfs"}}, "volume nfs is not a local-path volume"},
		{"outside the storage dir", hostPathPV("evil", outside), "outside"},
		{"storage dir itself", hostPathPV("root", p.Dir), "outside"},
		{"escapes with ..", hostPathPV("dots", p.Dir+"/../escape"), "outside"},
		{"nested below a volume", hostPathPV("deep", nested), "outside"},
		{"the host root", hostPathPV("slash", "/"), "outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.Delete(context.Background(), tc.pv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Delete = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	for _, d := range []string{outside, nested, p.Dir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed by a refused Delete: %v", d, err)
		}
	}
}
