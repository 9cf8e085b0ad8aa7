// Package hostcheck is gluebox's pre-flight: it checks that this host can run a node (kernel
// features, cgroups, helper binaries, free ports, disk) and says, for each problem, what is
// missing and how to fix it. `gluebox check` prints the whole report; `gluebox server` refuses
// to start on any failure. It only reads the host (binding a port for a moment at most).
package hostcheck

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// Port is a TCP address the server must be able to bind.
type Port struct {
	Addr string
	// Flag is the gluebox flag that moves it, if any.
	Flag string
	Why  string
}

// Options says what to check beyond the kernel.
type Options struct {
	Ports   []Port
	DataDir string
	// MinFreeBytes is the least free disk under DataDir (default 2 GiB).
	MinFreeBytes uint64
}

// Result is one check.
type Result struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Warning bool   `json:"warning,omitempty"` // a failed warning does not stop the server
	Detail  string `json:"detail"`
}

// Report is the outcome of Run.
type Report []Result

// Err returns one error line per failed (non-warning) check, or nil.
func (r Report) Err() error {
	var errs []error
	for _, c := range r {
		if !c.OK && !c.Warning {
			errs = append(errs, fmt.Errorf("pre-flight %s: %s", c.Name, c.Detail))
		}
	}
	return errors.Join(errs...)
}

// Run runs every check.
func Run(o Options) Report {
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 2 << 30
	}
	var r Report
	add := func(name string, ok bool, warn bool, okMsg, failMsg string) {
		d := okMsg
		if !ok {
			d = failMsg
		}
		r = append(r, Result{Name: name, OK: ok, Warning: warn, Detail: d})
	}
	add("root", os.Geteuid() == 0, false, "running as root", "gluebox must run as root: use sudo or the systemd service")
	add("overlayfs", hasFilesystem("overlay"), false, "overlay filesystem available", "the overlay filesystem is missing: `modprobe overlay` (kernel CONFIG_OVERLAY_FS)")
	add("bridge", exists("/sys/class/net") && (exists("/sys/module/bridge") || exists("/proc/sys/net/bridge")), false, "bridge support present",
		"Linux bridge support is missing: `modprobe bridge` (kernel CONFIG_BRIDGE)")
	add("br_netfilter", exists("/proc/sys/net/bridge/bridge-nf-call-iptables"), true, "bridged traffic passes iptables",
		"br_netfilter is not loaded: `modprobe br_netfilter`; without it, pods reaching a Service backed by a pod on the same node may fail")
	for _, ns := range []string{"net", "mnt", "pid", "ipc", "uts"} {
		add("namespace-"+ns, exists("/proc/self/ns/"+ns), false, ns+" namespaces available", "the kernel lacks "+ns+" namespaces (CONFIG_"+strings.ToUpper(ns)+"_NS)")
	}
	add("seccomp", seccompAvailable(), true, "seccomp available", "seccomp is not available: containers run without the default seccomp profile")
	add("oom_score_adj", CanLowerOOMScoreAdj(), true, "processes may lower oom_score_adj",
		"this host does not let gluebox lower oom_score_adj (no CAP_SYS_RESOURCE, as in some VMs and containers): containerd runs with restrict_oom_score_adj, so pods keep the score they inherit")
	v1 := CgroupV1()
	missing := missingControllers(v1)
	mode := "cgroup v2"
	if v1 {
		mode = "cgroup v1 (kubelet runs with failCgroupV1: false)"
	}
	add("cgroups", len(missing) == 0, false, mode+" with cpu, memory, pids controllers",
		fmt.Sprintf("%s is missing controllers %v: enable them on the kernel command line", mode, missing))
	for _, bin := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables"} {
		_, err := exec.LookPath(bin)
		add("binary-"+bin, err == nil, false, bin+" found", bin+" is not installed: `apt-get install iptables` (kube-proxy and the CNI plugins need it)")
	}
	if o.DataDir != "" {
		var st syscall.Statfs_t
		dir := o.DataDir
		for !exists(dir) && dir != "/" {
			dir = parent(dir)
		}
		if err := syscall.Statfs(dir, &st); err == nil {
			free := st.Bavail * uint64(st.Bsize)
			add("disk", free >= o.MinFreeBytes, false, fmt.Sprintf("%d MiB free under %s", free>>20, dir),
				fmt.Sprintf("only %d MiB free under %s, need %d MiB: free space or pick another --data-dir", free>>20, dir, o.MinFreeBytes>>20))
		}
	}
	for _, p := range o.Ports {
		err := canBind(p.Addr)
		fix := "stop the program using it"
		if p.Flag != "" {
			fix += " or pass " + p.Flag + " with a free port"
		}
		add("port "+p.Addr, err == nil, false, p.Why+" port free", fmt.Sprintf("%s port %s is in use: %s", p.Why, p.Addr, fix))
	}
	return r
}

// CgroupV1 reports whether the host runs the legacy cgroup v1 hierarchy (the unified
// hierarchy then has no controllers).
func CgroupV1() bool {
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	return err != nil || strings.TrimSpace(string(b)) == ""
}

func missingControllers(v1 bool) []string {
	var missing []string
	if v1 {
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "cpuset"} {
			if !exists("/sys/fs/cgroup/" + c) {
				missing = append(missing, c)
			}
		}
		return missing
	}
	b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	have := strings.Fields(string(b))
	for _, c := range []string{"cpu", "memory", "pids"} {
		found := false
		for _, h := range have {
			found = found || h == c
		}
		if !found {
			missing = append(missing, c)
		}
	}
	return missing
}

func canBind(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

func hasFilesystem(name string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == name {
			return true
		}
	}
	return false
}

func seccompAvailable() bool {
	b, err := os.ReadFile("/proc/self/status")
	return err == nil && strings.Contains(string(b), "Seccomp:")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func parent(p string) string {
	i := strings.LastIndex(strings.TrimRight(p, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// CanLowerOOMScoreAdj reports whether this process may lower its own oom_score_adj, which runc
// needs for pod sandboxes unless containerd restricts the adjustment.
func CanLowerOOMScoreAdj() bool {
	const f = "/proc/self/oom_score_adj"
	cur, err := os.ReadFile(f)
	if err != nil {
		return false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(cur)))
	if err != nil {
		return false
	}
	if v <= -1000 {
		return true
	}
	if err := os.WriteFile(f, []byte(strconv.Itoa(v-1)), 0o644); err != nil {
		return false
	}
	_ = os.WriteFile(f, []byte(strconv.Itoa(v)), 0o644) // raising it back is always allowed
	return true
}
