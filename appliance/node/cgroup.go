package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// EnsureCgroupRoot creates the cgroup under which the kubelet puts this instance's pods, in
// every mounted v1 hierarchy (initialising cpuset from its parent) or in the unified one.
func EnsureCgroupRoot(root string, v1 bool) error {
	if !v1 {
		dir := filepath.Join("/sys/fs/cgroup", root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cannot create cgroup %s: %w", dir, err)
		}
		ctrls, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		var enable []string
		for _, c := range strings.Fields(string(ctrls)) {
			enable = append(enable, "+"+c)
		}
		if len(enable) > 0 {
			_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644)
		}
		return nil
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return fmt.Errorf("cannot list cgroup hierarchies: %w", err)
	}
	for _, e := range entries {
		base := filepath.Join("/sys/fs/cgroup", e.Name())
		if e.Name() == "unified" {
			continue
		}
		if st, err := os.Lstat(base); err != nil || !st.IsDir() {
			continue // cpu,cpuacct style symlinks point at a real hierarchy listed too
		}
		dir := filepath.Join(base, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cannot create cgroup %s: %w", dir, err)
		}
		if e.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				cur, _ := os.ReadFile(filepath.Join(dir, f))
				if strings.TrimSpace(string(cur)) != "" {
					continue
				}
				parent, err := os.ReadFile(filepath.Join(base, f))
				if err != nil {
					return fmt.Errorf("cannot read %s: %w", f, err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
					return fmt.Errorf("cannot initialise %s in %s: %w", f, dir, err)
				}
			}
		}
	}
	return nil
}
