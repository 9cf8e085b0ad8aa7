// Package cleanup undoes what a gluebox instance did to the host: it kills every container and
// helper process of the instance, unmounts everything under its data dir, deletes its pod
// bridge and the KUBE-*/CNI-* iptables chains, and (with Purge) removes the data dir. It is
// `gluebox cleanup`; the server must be stopped first. Only the CLI imports it.
package cleanup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gluebox/gluebox/appliance/node"
	"github.com/gluebox/gluebox/appliance/paths"
)

// Options says what to clean.
type Options struct {
	Layout paths.Layout
	// Purge also removes the data dir (all cluster state, images, volumes).
	Purge bool
	// KeepIPTables leaves iptables rules alone (other Kubernetes nodes on this host share the
	// KUBE-* chain names).
	KeepIPTables bool
	Log          *slog.Logger
}

// Run cleans up. It keeps going after a failed step and returns all failures.
func Run(o Options) error {
	l := o.Layout
	var errs []error
	step := func(name string, err error) {
		if err != nil {
			o.Log.Warn("cleanup step failed", "step", name, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		o.Log.Info("cleaned", "step", name)
	}
	// Containers first (their processes hold mounts), then helpers, then shims.
	step("kill containers", killCgroup(l.CgroupRoot()))
	step("kill helper processes", killProcesses(func(exe string, cmdline []string) bool {
		if strings.HasPrefix(exe, l.Join("bin")+"/") {
			return true
		}
		for _, a := range cmdline {
			if strings.HasPrefix(a, l.Root()+"/") && strings.Contains(exe, "containerd-shim") {
				return true
			}
		}
		return false
	}))
	step("kill containers (second pass)", killCgroup(l.CgroupRoot()))
	step("remove cgroups", removeCgroups(l.CgroupRoot()))
	step("unmount", unmountUnder(l.Root()))
	step("delete pod bridge", deleteBridge(node.BridgeName))
	if !o.KeepIPTables {
		step("iptables", flushChains())
	}
	if o.Purge {
		step("remove data dir", os.RemoveAll(l.Root()))
	}
	return errors.Join(errs...)
}

// cgroupDirs returns the cgroup directories of root in every mounted hierarchy.
func cgroupDirs(root string) []string {
	var dirs []string
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.TrimSpace(string(b)) != "" {
		return []string{filepath.Join("/sys/fs/cgroup", root)}
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		d := filepath.Join("/sys/fs/cgroup", e.Name(), root)
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// killCgroup SIGKILLs every process in the cgroup tree root, until none is left or 10s pass.
func killCgroup(root string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := map[int]bool{}
		for _, d := range cgroupDirs(root) {
			_ = filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
				if err != nil || de.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids[pid] = true
					}
				}
				return nil
			})
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes in %s survived SIGKILL", len(pids), root)
		}
		for pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroups removes the cgroup tree root bottom-up.
func removeCgroups(root string) error {
	var errs []error
	for _, d := range cgroupDirs(root) {
		var dirs []string
		_ = filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, dir := range dirs {
			if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", dir, err))
			}
		}
	}
	return errors.Join(errs...)
}

// killProcesses SIGKILLs every process for which match(exe, cmdline) holds.
func killProcesses(match func(exe string, cmdline []string) bool) error {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	self := os.Getpid()
	var killed []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		raw, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if match(strings.TrimSuffix(exe, " (deleted)"), args) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = append(killed, pid)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range killed {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	prefix := strings.TrimRight(dir, "/") + "/"
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == strings.TrimRight(dir, "/") || strings.HasPrefix(mp, prefix) {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("umount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescape decodes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func deleteBridge(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return err
	}
	// Veths of dead pods hang off the bridge until their namespaces go; remove them too.
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Attrs().MasterIndex == link.Attrs().Index {
			_ = netlink.LinkDel(l)
		}
	}
	return netlink.LinkDel(link)
}

// flushChains removes the KUBE-* and CNI-* chains and every rule that mentions them, in each
// iptables back end present (nft and legacy, IPv4 and IPv6).
func flushChains() error {
	var errs []error
	for _, pair := range [][2]string{
		{"iptables-save", "iptables-restore"}, {"ip6tables-save", "ip6tables-restore"},
		{"iptables-legacy-save", "iptables-legacy-restore"}, {"ip6tables-legacy-save", "ip6tables-legacy-restore"},
	} {
		if _, err := exec.LookPath(pair[0]); err != nil {
			continue
		}
		out, err := exec.Command(pair[0]).Output()
		if err != nil {
			continue // back end not usable here
		}
		filtered, changed := FilterRules(out)
		if !changed {
			continue
		}
		cmd := exec.Command(pair[1])
		cmd.Stdin = bytes.NewReader(filtered)
		if b, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v: %s", pair[1], err, strings.TrimSpace(string(b))))
		}
	}
	if _, err := exec.LookPath("nft"); err == nil {
		for _, t := range []string{"ip kube-proxy", "ip6 kube-proxy"} {
			_ = exec.Command("nft", append([]string{"delete", "table"}, strings.Fields(t)...)...).Run()
		}
	}
	return errors.Join(errs...)
}

// FilterRules drops every line of iptables-save output that declares or mentions a KUBE- or
// CNI- chain, and reports whether anything was dropped.
func FilterRules(save []byte) ([]byte, bool) {
	var out bytes.Buffer
	changed := false
	for _, line := range strings.SplitAfter(string(save), "\n") {
		if strings.Contains(line, "KUBE-") || strings.Contains(line, "CNI-") {
			changed = true
			continue
		}
		out.WriteString(line)
	}
	return out.Bytes(), changed
}
