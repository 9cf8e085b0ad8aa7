package node

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/gluebox/gluebox/appliance/paths"
)

// BridgeName is the Linux bridge that connects this node's pods; cleanup removes it.
const BridgeName = "gbx0"

// NodePodCIDR returns the pod subnet of this (single) node: the first /24 of the cluster CIDR.
func NodePodCIDR(clusterCIDR string) (string, error) {
	ip, n, err := net.ParseCIDR(clusterCIDR)
	if err != nil || ip.To4() == nil {
		return "", fmt.Errorf("cluster CIDR %q is not an IPv4 CIDR", clusterCIDR)
	}
	if ones, _ := n.Mask.Size(); ones > 24 {
		return "", fmt.Errorf("cluster CIDR %q is smaller than a node's /24", clusterCIDR)
	}
	return (&net.IPNet{IP: n.IP.To4(), Mask: net.CIDRMask(24, 32)}).String(), nil
}

// WriteCNIConfig writes the node's CNI network list: a bridge with host-local addresses and
// masquerading, and portmap for hostPort. containerd sets up each pod's loopback itself with the
// bundled loopback plugin.
func WriteCNIConfig(l paths.Layout, clusterCIDR string) error {
	subnet, err := NodePodCIDR(clusterCIDR)
	if err != nil {
		return err
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "gluebox",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      BridgeName,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": l.Join("cni", "ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.CNIConfDir(), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.CNIConfDir(), "10-gluebox.conflist"), b, 0o644)
}
