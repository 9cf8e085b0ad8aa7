// Package paths derives every file and directory location of one gluebox instance from its data
// dir, so no other package builds paths by hand. It has no lifecycle; anything may import it.
package paths

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// DefaultDataDir is where `gluebox server` keeps its state when --data-dir is not given.
const DefaultDataDir = "/var/lib/gluebox"

// Layout is the on-disk layout of one instance. The zero value is not useful; use New.
type Layout struct {
	root string
}

// New returns the layout rooted at dataDir, made absolute.
func New(dataDir string) (Layout, error) {
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return Layout{}, fmt.Errorf("cannot resolve data dir %q: %w", dataDir, err)
	}
	return Layout{root: abs}, nil
}

// FromEnv returns the layout named by the GLUEBOX_DATA_DIR variable, or the default one.
func FromEnv() (Layout, error) { return New(os.Getenv("GLUEBOX_DATA_DIR")) }

// Root is the data dir itself.
func (l Layout) Root() string { return l.root }

// Join returns a path below the data dir.
func (l Layout) Join(elem ...string) string {
	return filepath.Join(append([]string{l.root}, elem...)...)
}

// Socket is the root-only unix socket of the local JSON API.
func (l Layout) Socket() string { return l.Join("run", "gluebox.sock") }

// RunDir holds sockets and pid files that mean nothing after a reboot.
func (l Layout) RunDir() string { return l.Join("run") }

// LogDir holds the log files of supervised child processes.
func (l Layout) LogDir() string { return l.Join("logs") }

// BinDir is where the embedded bundle with the given content hash is extracted.
func (l Layout) BinDir(hash string) string { return l.Join("bin", hash) }

// PKIDir holds the cluster CA, serving and client certificates.
func (l Layout) PKIDir() string { return l.Join("pki") }

// DatastoreDir holds kine's SQLite database.
func (l Layout) DatastoreDir() string { return l.Join("datastore") }

// KubeconfigAdmin is the cluster-admin kubeconfig used by `gluebox kubectl`.
func (l Layout) KubeconfigAdmin() string { return l.Join("kubeconfig", "admin.yaml") }

// KubeconfigDir holds one kubeconfig per component.
func (l Layout) KubeconfigDir() string { return l.Join("kubeconfig") }

// ContainerdRoot is containerd's persistent root (images, snapshots).
func (l Layout) ContainerdRoot() string { return l.Join("containerd", "root") }

// ContainerdState is containerd's state dir (sockets, shim bundles).
func (l Layout) ContainerdState() string { return l.Join("containerd", "state") }

// ContainerdSocket is the gRPC socket of this instance's containerd.
func (l Layout) ContainerdSocket() string { return l.Join("containerd", "state", "containerd.sock") }

// KubeletRoot is the kubelet's root dir (pods, volumes, plugins).
func (l Layout) KubeletRoot() string { return l.Join("kubelet") }

// CNIConfDir holds the node's CNI network configuration.
func (l Layout) CNIConfDir() string { return l.Join("cni", "net.d") }

// StorageDir is where the local-path provisioner creates persistent volumes.
func (l Layout) StorageDir() string { return l.Join("storage") }

// RegistryDir is the built-in OCI registry's storage root.
func (l Layout) RegistryDir() string { return l.Join("registry") }

// SecretsDir holds the secret store's bbolt file and its age identity.
func (l Layout) SecretsDir() string { return l.Join("secrets") }

// BackupsDir holds encrypted snapshot backups.
func (l Layout) BackupsDir() string { return l.Join("backups") }

// FrontDoorDir holds the front door's ingress CA and the certificates it issued.
func (l Layout) FrontDoorDir() string { return l.Join("pki", "ingress") }

// MetricsDir holds VictoriaMetrics' samples and scrape configuration.
func (l Layout) MetricsDir() string { return l.Join("metrics") }

// LogsDir holds VictoriaLogs' data.
func (l Layout) LogsDir() string { return l.Join("logs-store") }

// GitOpsDir holds the GitOps engine's state file and its Git cache.
func (l Layout) GitOpsDir() string { return l.Join("gitops") }

// StateDir holds small platform state files (status of syncs, builds, history).
func (l Layout) StateDir() string { return l.Join("state") }

// CgroupRoot is the cgroup under which this instance's pods run: /gluebox for the default data
// dir, /gluebox-<hash of the data dir> otherwise, so two instances on one host never share one.
func (l Layout) CgroupRoot() string {
	if l.root == DefaultDataDir {
		return "/gluebox"
	}
	sum := sha256.Sum256([]byte(l.root))
	return "/gluebox-" + hex.EncodeToString(sum[:4])
}
