// Package localpath is the node's volume provisioner: PersistentVolumeClaims of the default
// "local-path" StorageClass get a directory under <data-dir>/storage on this node, exposed as a
// hostPath PersistentVolume pinned to the node. It uses the Kubernetes SIG Storage provisioner
// library for the claim/volume bookkeeping and only creates and removes directories itself.
// Only the server imports it.
package localpath

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/gluebox/gluebox/appliance/kubeutil"
)

// ProvisionerName is the StorageClass provisioner gluebox serves.
const ProvisionerName = "gluebox.dev/local-path"

// StorageClassName is the default StorageClass gluebox creates.
const StorageClassName = "local-path"

// Provisioner creates volumes as directories under Dir on the node NodeName.
type Provisioner struct {
	Dir      string
	NodeName string
	Client   kubernetes.Interface
	Log      *slog.Logger
}

var _ controller.Provisioner = (*Provisioner)(nil)

var safeName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// VolumeDir returns where the volume for a claim lives.
func (p *Provisioner) VolumeDir(pvName, namespace, claim string) (string, error) {
	for _, n := range []string{pvName, namespace, claim} {
		if !safeName.MatchString(n) {
			return "", fmt.Errorf("name %q is not a valid Kubernetes name", n)
		}
	}
	return filepath.Join(p.Dir, pvName+"_"+namespace+"_"+claim), nil
}

// Provision implements controller.Provisioner.
func (p *Provisioner) Provision(ctx context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	if opts.SelectedNodeName != "" && opts.SelectedNodeName != p.NodeName {
		return nil, controller.ProvisioningFinished, fmt.Errorf("claim %s/%s wants node %s, this provisioner serves %s", opts.PVC.Namespace, opts.PVC.Name, opts.SelectedNodeName, p.NodeName)
	}
	dir, err := p.VolumeDir(opts.PVName, opts.PVC.Namespace, opts.PVC.Name)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("cannot create volume dir %s: %w", dir, err)
	}
	_ = os.Chmod(dir, 0o777) // pods run as any user; the directory is theirs alone
	p.Log.Info("provisioned volume", "pv", opts.PVName, "claim", opts.PVC.Namespace+"/"+opts.PVC.Name, "dir", dir)
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	return &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: opts.PVName},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			VolumeMode:                    opts.PVC.Spec.VolumeMode,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: opts.PVC.Spec.Resources.Requests[v1.ResourceStorage]},
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: dir, Type: ptr.To(v1.HostPathDirectoryOrCreate)},
			},
			NodeAffinity: &v1.VolumeNodeAffinity{Required: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: v1.NodeSelectorOpIn, Values: []string{p.NodeName}}},
			}}}},
		},
	}, controller.ProvisioningFinished, nil
}

// Delete implements controller.Provisioner: the volume's directory is removed.
func (p *Provisioner) Delete(ctx context.Context, pv *v1.PersistentVolume) error {
	if pv.Spec.HostPath == nil {
		return fmt.Errorf("volume %s is not a local-path volume", pv.Name)
	}
	dir := filepath.Clean(pv.Spec.HostPath.Path)
	if filepath.Dir(dir) != filepath.Clean(p.Dir) {
		return fmt.Errorf("volume %s points at %s, outside %s: refusing to delete it", pv.Name, dir, p.Dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cannot remove volume dir %s: %w", dir, err)
	}
	p.Log.Info("deleted volume", "pv", pv.Name, "dir", dir)
	return nil
}

// Name implements supervise.Component.
func (p *Provisioner) Name() string { return "local-path-provisioner" }

// Run creates the default StorageClass and runs the provisioning controller until ctx ends.
func (p *Provisioner) Run(ctx context.Context) error {
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return fmt.Errorf("cannot create storage dir: %w", err)
	}
	sc := &storagev1.StorageClass{
		TypeMeta: metav1.TypeMeta{APIVersion: "storage.k8s.io/v1", Kind: "StorageClass"},
		ObjectMeta: metav1.ObjectMeta{Name: StorageClassName, Annotations: map[string]string{
			"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner:       ProvisionerName,
		ReclaimPolicy:     ptr.To(v1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
	}
	if err := kubeutil.Apply(ctx, p.Client.StorageV1().RESTClient(), "storageclasses", "", sc.Name, sc); err != nil {
		return err
	}
	pc := controller.NewProvisionController(ctx, p.Client, ProvisionerName, p,
		controller.LeaderElection(false),
		controller.ResyncPeriod(5*time.Minute),
		controller.FailedProvisionThreshold(10),
	)
	pc.Run(ctx)
	return nil
}

// WaitReady implements supervise.Component.
func (p *Provisioner) WaitReady(ctx context.Context) error {
	for {
		if _, err := p.Client.StorageV1().StorageClasses().Get(ctx, StorageClassName, metav1.GetOptions{}); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
