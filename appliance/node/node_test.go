package node

import (
	"context"
	"encoding/json"
	goldenfile "github.com/gluebox/gluebox/appliance/internal/golden"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
	"sigs.k8s.io/yaml"

	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/kube"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/pki"
)

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, name, []byte(got))
}

// testLayout is a layout at a fixed path, for rendering only (nothing is written there).
func testLayout(t *testing.T) paths.Layout {
	t.Helper()
	l, err := paths.New("/var/lib/gluebox")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func testCerts(l paths.Layout) *kube.Certs {
	pkiDir := l.PKIDir()
	return &kube.Certs{
		CA:             &pki.CA{CertFile: filepath.Join(pkiDir, "cluster-ca.crt"), KeyFile: filepath.Join(pkiDir, "cluster-ca.key")},
		KubeletServing: pki.Pair{CertFile: filepath.Join(pkiDir, "kubelet-serving.crt"), KeyFile: filepath.Join(pkiDir, "kubelet-serving.key")},
		KubeletKubecfg: filepath.Join(l.KubeconfigDir(), "kubelet.yaml"),
		ProxyKubecfg:   filepath.Join(l.KubeconfigDir(), "kube-proxy.yaml"),
	}
}

func testNet() kube.ClusterNetwork {
	n := kube.ClusterNetwork{NodeName: "node-1", NodeIP: net.ParseIP("192.168.1.20").To4()}
	n.Defaults()
	return n
}

func TestRenderContainerdConfig(t *testing.T) {
	l := testLayout(t)
	for _, tc := range []struct {
		golden      string
		restrictOOM bool
	}{
		{"containerd.toml", false},
		{"containerd-restrict-oom.toml", true},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got, err := RenderContainerdConfig(ContainerdConfig{
				Layout:              l,
				Bundle:              bundle.Dir{Root: "/var/lib/gluebox/bin/current"},
				RestrictOOMScoreAdj: tc.restrictOOM,
			})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, got)
		})
	}
}

func TestRenderKubeletConfig(t *testing.T) {
	l := testLayout(t)
	for _, tc := range []struct {
		golden    string
		cfg       KubeletConfig
		wantV1    bool
		wantRoot  string
		wantResol string
	}{
		{"kubelet-cgroupv2.yaml", KubeletConfig{Layout: l, Certs: testCerts(l), Net: testNet()}, false, "/gluebox", "/etc/resolv.conf"},
		{"kubelet-cgroupv1.yaml", KubeletConfig{Layout: l, Certs: testCerts(l), Net: testNet(), CgroupV1: true,
			CgroupRoot: "/gluebox-1a2b3c4d", ResolvConf: "/run/systemd/resolve/resolv.conf"}, true, "/gluebox-1a2b3c4d", "/run/systemd/resolve/resolv.conf"},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			got := RenderKubeletConfig(tc.cfg)
			golden(t, tc.golden, got)

			// The kubelet itself must accept the file and read what gluebox means.
			file := filepath.Join(t.TempDir(), "kubelet-config.yaml")
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, file)
			if err != nil {
				t.Fatal(err)
			}
			kc, err := loader.Load(context.Background())
			if err != nil {
				t.Fatalf("kubelet cannot load the rendered config: %v", err)
			}
			if kc.FailCgroupV1 == tc.wantV1 {
				t.Errorf("failCgroupV1 = %v for CgroupV1 %v", kc.FailCgroupV1, tc.wantV1)
			}
			for _, c := range []struct{ what, got, want string }{
				{"cgroupRoot", kc.CgroupRoot, tc.wantRoot},
				{"resolvConf", kc.ResolverConfig, tc.wantResol},
				{"clusterDNS", strings.Join(kc.ClusterDNS, ","), "10.43.0.10"},
				{"address", kc.Address, "192.168.1.20"},
				{"clientCAFile", kc.Authentication.X509.ClientCAFile, "/var/lib/gluebox/pki/cluster-ca.crt"},
				{"tlsCertFile", kc.TLSCertFile, "/var/lib/gluebox/pki/kubelet-serving.crt"},
				{"containerRuntimeEndpoint", kc.ContainerRuntimeEndpoint, "unix:///var/lib/gluebox/containerd/state/containerd.sock"},
				{"evictionHard nodefs", kc.EvictionHard["nodefs.available"], "5%"},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
		})
	}
}

func TestRenderProxyConfig(t *testing.T) {
	l := testLayout(t)
	got := RenderProxyConfig(ProxyConfig{Layout: l, Certs: testCerts(l), Net: testNet()})
	golden(t, "kube-proxy.yaml", got)
	var m map[string]any
	if err := yaml.Unmarshal([]byte(got), &m); err != nil {
		t.Fatalf("rendered kube-proxy config is not YAML: %v", err)
	}
	if m["clusterCIDR"] != "10.42.0.0/16" || m["hostnameOverride"] != "node-1" || m["mode"] != "iptables" {
		t.Errorf("kube-proxy config = %v", m)
	}
}

func TestWriteCNIConfig(t *testing.T) {
	root := t.TempDir()
	l, err := paths.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteCNIConfig(l, "10.42.0.0/16"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "cni", "net.d", "10-gluebox.conflist"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "10-gluebox.conflist", strings.ReplaceAll(string(b), root, "$DATA_DIR"))

	var conf struct {
		Plugins []struct {
			Type   string `json:"type"`
			Bridge string `json:"bridge"`
			IPAM   struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatalf("conflist is not JSON: %v", err)
	}
	if len(conf.Plugins) == 0 || conf.Plugins[0].Bridge != BridgeName || conf.Plugins[0].IPAM.Ranges[0][0].Subnet != "10.42.0.0/24" {
		t.Errorf("conflist = %+v", conf)
	}

	if err := WriteCNIConfig(l, "not-a-cidr"); err == nil || !strings.Contains(err.Error(), `"not-a-cidr"`) {
		t.Errorf("WriteCNIConfig with a bad CIDR = %v, want an error naming it", err)
	}
}

func TestNodePodCIDR(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "10.42.0.0/16", want: "10.42.0.0/24"},
		{in: "10.42.0.0/24", want: "10.42.0.0/24"},
		{in: "172.16.0.0/12", want: "172.16.0.0/24"},
		{in: "10.0.0.0/8", want: "10.0.0.0/24"},
		// The first /24 of the range, whatever host address the CIDR was written with.
		{in: "10.42.5.7/16", want: "10.42.0.0/24"},
		{in: "10.42.0.0/25", wantErr: true}, // smaller than one node's /24
		{in: "fd00::/64", wantErr: true},
		{in: "10.42.0.0", wantErr: true},
		{in: "", wantErr: true},
		{in: "nonsense", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := NodePodCIDR(tc.in)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
					t.Fatalf("NodePodCIDR(%q) = %q, %v; want an error naming the input", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NodePodCIDR(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestWriteRegistryHosts(t *testing.T) {
	dir := t.TempDir()
	if err := writeRegistryHosts(dir, map[string]string{"registry.gluebox.local": "http://127.0.0.1:5000"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "registry.gluebox.local", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "hosts.toml", string(b))
}
