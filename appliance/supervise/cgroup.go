package supervise

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Limits are kernel-enforced resource limits of a child. A child with a CgroupParent runs in a
// cgroup of its own, CgroupParent/<child name>, created when Run starts and removed when Run
// returns; the limits are set on that cgroup before the program is started.
//
// Zero or negative MemoryBytes and CPU mean no limit. An empty CgroupParent means no cgroup of
// its own: the child then shares gluebox's cgroup, and setting a limit is an error.
//
// How the child gets into its cgroup depends on the host. With cgroup v2 (the unified hierarchy
// at /sys/fs/cgroup) the program is cloned straight into it (clone3 with CLONE_INTO_CGROUP), so
// every byte it allocates counts. With cgroup v1 the child's cgroup is created in the memory
// hierarchy (and the cpu one for a CPU limit) and the pid is written to their cgroup.procs right
// after the program has started: in that window, well under a millisecond, the program runs its
// first instructions in gluebox's cgroup, and what it allocates then stays charged to gluebox
// (v1 moves no charges any more). Nothing a program does in its first millisecond can starve
// the node, so that window is accepted rather than adding a re-exec shim.
type Limits struct {
	// MemoryBytes is the hard memory limit of the child and whatever it starts, page cache
	// included (memory.max in cgroup v2, memory.limit_in_bytes in v1). When the kernel cannot
	// reclaim enough below it, it OOM-kills the child, and Run restarts it like any other death
	// (see ChildState.OOMKills). Swap is not limited: on a host with swap the child swaps
	// before it is killed.
	MemoryBytes int64
	// CPU is how much CPU time the child may use, in cores: 1.0 is one core, 0.5 half of one,
	// enforced by the CFS bandwidth quota over a 100ms period (cpu.max in v2,
	// cpu.cfs_quota_us in v1). At least 0.01.
	CPU float64
	// CgroupParent is the cgroup the child's own cgroup goes under, as a path from the root of
	// the hierarchy, e.g. "/gluebox/children". It is created when missing, and left in place
	// when the child stops (other children share it).
	CgroupParent string
	// MemoryFlag names the setting that raises MemoryBytes, e.g. a command-line flag; the
	// warning logged after an OOM kill tells the user to raise it. Empty names
	// "Limits.MemoryBytes".
	MemoryFlag string
}

// cfsPeriod is the CFS bandwidth period in microseconds, the kernel's default.
const cfsPeriod = 100_000

// Validate reports limits that cannot work.
func (l Limits) Validate() error {
	if l.CgroupParent == "" {
		if l.MemoryBytes > 0 || l.CPU > 0 {
			return errors.New("limits: a memory or CPU limit needs a CgroupParent (the cgroup the child's own cgroup goes under)")
		}
		return nil
	}
	if !filepath.IsAbs(l.CgroupParent) || filepath.Clean(l.CgroupParent) != l.CgroupParent {
		return fmt.Errorf("limits: CgroupParent %q must be a clean absolute cgroup path such as /gluebox/children", l.CgroupParent)
	}
	if l.MemoryBytes > 0 && l.MemoryBytes < 1<<20 {
		return fmt.Errorf("limits: MemoryBytes %d is below 1 MiB; it is a number of bytes", l.MemoryBytes)
	}
	if math.IsNaN(l.CPU) || math.IsInf(l.CPU, 0) || (l.CPU > 0 && l.CPU < 0.01) {
		return fmt.Errorf("limits: CPU %v must be at least 0.01 cores", l.CPU)
	}
	return nil
}

// cgroupFS says where the cgroup hierarchies are mounted.
type cgroupFS struct {
	// Unified is the mount point of the cgroup v2 hierarchy when the host runs cgroup v2 (it
	// holds the controllers), normally /sys/fs/cgroup; empty on a cgroup v1 host, including a
	// "hybrid" one whose v2 hierarchy at /sys/fs/cgroup/unified has no controllers.
	Unified string
	// V1 maps each v1 controller (memory, cpu, ...) to the mount point of its hierarchy.
	V1 map[string]string
}

// Magic numbers of statfs(2)'s f_type.
const (
	cgroup2SuperMagic = 0x63677270
	cgroupSuperMagic  = 0x27e0eb
)

// detectCgroupFS finds the cgroup hierarchies of this host: /sys/fs/cgroup being a cgroup2
// file system means cgroup v2 (unified); otherwise the v1 hierarchies are read from
// /proc/self/mountinfo.
func detectCgroupFS() (cgroupFS, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup", &st); err != nil {
		return cgroupFS{}, fmt.Errorf("cannot stat /sys/fs/cgroup: %w", err)
	}
	if st.Type == cgroup2SuperMagic {
		return cgroupFS{Unified: "/sys/fs/cgroup"}, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return cgroupFS{}, fmt.Errorf("cannot list mounts: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

// parseMountinfo returns the v1 hierarchies mounted according to r, in /proc/self/mountinfo's
// format: "id parent major:minor root mountpoint options [optional...] - fstype source super".
// The first mount of a controller wins.
func parseMountinfo(r io.Reader) (cgroupFS, error) {
	fsys := cgroupFS{V1: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := slices.Index(fields, "-")
		if sep < 5 || len(fields) < sep+4 || fields[sep+1] != "cgroup" {
			continue
		}
		mnt := unescapeMount(fields[4])
		for _, opt := range strings.Split(fields[sep+3], ",") {
			if opt == "rw" || opt == "ro" || strings.Contains(opt, "=") {
				continue
			}
			if _, ok := fsys.V1[opt]; !ok {
				fsys.V1[opt] = mnt
			}
		}
	}
	if err := sc.Err(); err != nil {
		return cgroupFS{}, fmt.Errorf("cannot read mountinfo: %w", err)
	}
	return fsys, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroup is a child's own cgroup: one directory in the unified hierarchy, or one in each v1
// hierarchy it needs.
type cgroup struct {
	path   string // from the hierarchy root, e.g. /gluebox/children/vmalert
	v2     bool
	root   string // v2: the unified mount point
	memDir string // where memory.* are; empty without the memory controller
	cpuDir string // where the CPU quota is; empty without a CPU limit
	limits Limits
	// oomBase is the OOM kill count when the cgroup was set up: an old cgroup left by a
	// gluebox that was killed is reused, and its count does not belong to this run.
	oomBase int
}

// newCgroup computes where the cgroup of the child name with limits l goes on fsys; nothing is
// created. A controller a limit needs but the host lacks is an error; the memory controller is
// also used, when there, to report memory use and OOM kills of a child without a memory limit.
func newCgroup(fsys cgroupFS, l Limits, name string) (*cgroup, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("limits: child name %q cannot name a cgroup", name)
	}
	cg := &cgroup{path: filepath.Join(l.CgroupParent, name), limits: l}
	if fsys.Unified != "" {
		cg.v2, cg.root = true, fsys.Unified
		dir := filepath.Join(fsys.Unified, cg.path)
		cg.memDir, cg.cpuDir = dir, dir
		have, err := os.ReadFile(filepath.Join(fsys.Unified, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("cannot read the controllers of %s: %w", fsys.Unified, err)
		}
		ctrls := strings.Fields(string(have))
		if !slices.Contains(ctrls, "memory") {
			if l.MemoryBytes > 0 {
				return nil, fmt.Errorf("the cgroup v2 hierarchy at %s has no memory controller (%s lists %q); enable it on the kernel command line (cgroup_enable=memory)", fsys.Unified, filepath.Join(fsys.Unified, "cgroup.controllers"), strings.TrimSpace(string(have)))
			}
			cg.memDir = ""
		}
		if l.CPU <= 0 {
			cg.cpuDir = ""
		} else if !slices.Contains(ctrls, "cpu") {
			return nil, fmt.Errorf("the cgroup v2 hierarchy at %s has no cpu controller (%s lists %q)", fsys.Unified, filepath.Join(fsys.Unified, "cgroup.controllers"), strings.TrimSpace(string(have)))
		}
		return cg, nil
	}
	if mnt := fsys.V1["memory"]; mnt != "" {
		cg.memDir = filepath.Join(mnt, cg.path)
	} else if l.MemoryBytes > 0 || l.CPU <= 0 {
		return nil, errors.New("no cgroup memory hierarchy is mounted (neither cgroup v2 at /sys/fs/cgroup nor a v1 memory hierarchy such as /sys/fs/cgroup/memory)")
	}
	if l.CPU > 0 {
		mnt := fsys.V1["cpu"]
		if mnt == "" {
			return nil, errors.New("no cgroup cpu hierarchy is mounted (neither cgroup v2 at /sys/fs/cgroup nor a v1 cpu hierarchy such as /sys/fs/cgroup/cpu)")
		}
		cg.cpuDir = filepath.Join(mnt, cg.path)
	}
	return cg, nil
}

// dirs returns the cgroup's directories, each once.
func (cg *cgroup) dirs() []string {
	var ds []string
	for _, d := range []string{cg.memDir, cg.cpuDir} {
		if d != "" && !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	if cg.v2 && len(ds) == 0 {
		ds = []string{filepath.Join(cg.root, cg.path)}
	}
	return ds
}

// create makes the cgroup's directories and sets the limits (resetting any left from an
// earlier run). In cgroup v2 it first enables the controllers the limits need in every
// ancestor's cgroup.subtree_control.
func (cg *cgroup) create() error {
	if cg.v2 {
		var enable []string
		if cg.memDir != "" {
			enable = append(enable, "memory")
		}
		if cg.cpuDir != "" {
			enable = append(enable, "cpu")
		}
		dir := cg.root
		if err := enableControllers(dir, enable); err != nil {
			return err
		}
		for _, elem := range strings.Split(strings.Trim(cg.limits.CgroupParent, "/"), "/") {
			if elem == "" {
				continue // CgroupParent "/"
			}
			dir = filepath.Join(dir, elem)
			if err := mkdir(dir); err != nil {
				return err
			}
			if err := enableControllers(dir, enable); err != nil {
				return err
			}
		}
	}
	for _, d := range cg.dirs() {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cannot create cgroup %s: %w", d, err)
		}
	}
	mem, quota := "max", "max"
	if cg.limits.MemoryBytes > 0 {
		mem = strconv.FormatInt(cg.limits.MemoryBytes, 10)
	}
	if cg.limits.CPU > 0 {
		quota = strconv.FormatInt(int64(math.Round(cg.limits.CPU*cfsPeriod)), 10)
	}
	var writes [][2]string
	switch {
	case cg.v2:
		if cg.memDir != "" {
			writes = append(writes, [2]string{filepath.Join(cg.memDir, "memory.max"), mem})
		}
		if cg.cpuDir != "" {
			writes = append(writes, [2]string{filepath.Join(cg.cpuDir, "cpu.max"), quota + " " + strconv.Itoa(cfsPeriod)})
		}
	default:
		if mem == "max" {
			mem = "-1"
		}
		if quota == "max" {
			quota = "-1"
		}
		if cg.memDir != "" {
			writes = append(writes, [2]string{filepath.Join(cg.memDir, "memory.limit_in_bytes"), mem})
		}
		if cg.cpuDir != "" {
			writes = append(writes,
				[2]string{filepath.Join(cg.cpuDir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriod)},
				[2]string{filepath.Join(cg.cpuDir, "cpu.cfs_quota_us"), quota})
		}
	}
	for _, w := range writes {
		if err := writeCgroupFile(w[0], w[1]); err != nil {
			return err
		}
	}
	cg.oomBase, _ = cg.oomKills()
	return nil
}

func mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cannot create cgroup %s: %w", dir, err)
	}
	return nil
}

// enableControllers makes sure the children of the v2 cgroup dir get the controllers.
func enableControllers(dir string, ctrls []string) error {
	if len(ctrls) == 0 {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cannot read the controllers of cgroup %s: %w", dir, err)
	}
	on := strings.Fields(string(b))
	var add []string
	for _, c := range ctrls {
		if !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	return writeCgroupFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(add, " "))
}

func writeCgroupFile(path, value string) error {
	// No O_CREATE: a missing control file means a missing controller, not a file to make.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", path, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write %q to %s: %w", value, path, err)
	}
	return nil
}

// openDir opens the v2 cgroup directory for clone3's CLONE_INTO_CGROUP.
func (cg *cgroup) openDir() (int, error) {
	dir := cg.dirs()[0]
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cannot open cgroup %s: %w", dir, err)
	}
	return fd, nil
}

// enter moves the process pid into the cgroup. A process that has exited already is not an
// error: its exit is reported by Wait.
func (cg *cgroup) enter(pid int) error {
	for _, d := range cg.dirs() {
		err := writeCgroupFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid))
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	return nil
}

// usage returns the memory the cgroup is charged for now, page cache included.
func (cg *cgroup) usage() (int64, error) {
	if cg.memDir == "" {
		return 0, errors.New("no memory controller")
	}
	file := "memory.usage_in_bytes"
	if cg.v2 {
		file = "memory.current"
	}
	b, err := os.ReadFile(filepath.Join(cg.memDir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// oomKills returns how many processes the kernel killed for the cgroup's memory limit since
// the cgroup was created: oom_kill in memory.events (v2) or memory.oom_control (v1).
func (cg *cgroup) oomKills() (int, error) {
	if cg.memDir == "" {
		return 0, errors.New("no memory controller")
	}
	file := "memory.oom_control"
	if cg.v2 {
		file = "memory.events"
	}
	b, err := os.ReadFile(filepath.Join(cg.memDir, file))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("%s has no oom_kill count (kernel older than 4.13?)", filepath.Join(cg.memDir, file))
}

// remove removes the cgroup's directories once the child has exited. Processes the child left
// in its cgroup are killed: nobody would watch them, and they would keep the cgroup (EBUSY).
func (cg *cgroup) remove() error {
	var errs []error
	for _, d := range cg.dirs() {
		errs = append(errs, removeCgroupDir(d))
	}
	return errors.Join(errs...)
}

// removeCgroupDir removes one empty-of-subgroups cgroup directory, killing what still runs in
// it and retrying for up to 2 seconds while the kernel reports it busy.
func removeCgroupDir(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("cannot remove cgroup %s: %w", dir, err)
		}
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil {
			for _, f := range strings.Fields(string(b)) {
				if pid, perr := strconv.Atoi(f); perr == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// CheckCgroups reports why children cannot get kernel-enforced limits on this host, or nil
// when they can: gluebox must run as root and the memory and cpu controllers must be mounted,
// in the cgroup v2 hierarchy at /sys/fs/cgroup or in v1 hierarchies.
func CheckCgroups() error {
	if os.Geteuid() != 0 {
		return errors.New("gluebox does not run as root, so it cannot create cgroups")
	}
	fsys, err := detectCgroupFS()
	if err != nil {
		return err
	}
	return checkCgroups(fsys)
}

// checkCgroups is CheckCgroups on the hierarchies fsys (tests choose them).
func checkCgroups(fsys cgroupFS) error {
	_, err := newCgroup(fsys, Limits{MemoryBytes: 1 << 30, CPU: 1, CgroupParent: "/"}, "check")
	return err
}

// RemoveCgroup removes the cgroup path (e.g. a CgroupParent) and every cgroup below it from
// the hierarchies Limits use (the unified one, or v1's memory and cpu), killing the processes
// left in them. A missing cgroup is not an error.
func RemoveCgroup(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return fmt.Errorf("cannot remove cgroup %q: not a clean absolute path below the root", path)
	}
	fsys, err := detectCgroupFS()
	if err != nil {
		return err
	}
	return removeCgroup(fsys, path)
}

// removeCgroup is RemoveCgroup on the hierarchies fsys.
func removeCgroup(fsys cgroupFS, path string) error {
	var roots []string
	if fsys.Unified != "" {
		roots = []string{fsys.Unified}
	} else {
		for _, c := range []string{"memory", "cpu"} {
			if m := fsys.V1[c]; m != "" && !slices.Contains(roots, m) {
				roots = append(roots, m)
			}
		}
	}
	var errs []error
	for _, r := range roots {
		var dirs []string
		err := filepath.WalkDir(filepath.Join(r, path), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, d := range slices.Backward(dirs) {
			errs = append(errs, removeCgroupDir(d))
		}
	}
	return errors.Join(errs...)
}

// limitsError wraps a failure to set up a child's cgroup with what the user can do about it.
func limitsError(name string, err error) error {
	fix := "run gluebox as root on a host with the cgroup memory and cpu controllers mounted (`gluebox check` lists what is missing)"
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		fix = "gluebox must run as root with a writable cgroup file system (in a container: --privileged and --cgroupns=host, or a delegated cgroup)"
	}
	return fmt.Errorf("%s: cannot apply its resource limits: %w; %s", name, err, fix)
}

// logCgroupRemoval removes cg and logs what could not be removed.
func logCgroupRemoval(cg *cgroup, log *slog.Logger) {
	if err := cg.remove(); err != nil {
		log.Warn("cannot remove the child's cgroup; `gluebox cleanup` removes it", "err", err)
	}
}

// LimitCgroupCPU limits the CPU time of everything in the cgroup path (a CgroupParent such as
// /gluebox/children) together to cores cores, so that children whose own limits add up to more
// than the host has still cannot take it all. cores <= 0 removes the limit. The cgroup is created
// when missing.
//
// On cgroup v1 a child's quota may not exceed its parent's, so children placed under path must
// ask for at most cores each (see Limits.CPU). Quotas that cgroups left below path by an earlier
// run hold above the new limit are lifted (they then follow the parent's), since otherwise the
// kernel refuses the parent's.
func LimitCgroupCPU(path string, cores float64) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return fmt.Errorf("cannot limit cgroup %q: not a clean absolute path below the root", path)
	}
	if math.IsNaN(cores) || math.IsInf(cores, 0) || cores > 0 && cores < 0.01 {
		return fmt.Errorf("cannot limit cgroup %s to %v cores: give at least 0.01, or 0 for no limit", path, cores)
	}
	fsys, err := detectCgroupFS()
	if err != nil {
		return err
	}
	return limitCgroupCPU(fsys, path, cores)
}

func limitCgroupCPU(fsys cgroupFS, path string, cores float64) error {
	quota := "max"
	if cores > 0 {
		quota = strconv.FormatInt(int64(math.Round(cores*cfsPeriod)), 10)
	}
	if fsys.Unified != "" {
		have, err := os.ReadFile(filepath.Join(fsys.Unified, "cgroup.controllers"))
		if err != nil {
			return fmt.Errorf("cannot read the controllers of %s: %w", fsys.Unified, err)
		}
		if !slices.Contains(strings.Fields(string(have)), "cpu") {
			return fmt.Errorf("the cgroup v2 hierarchy at %s has no cpu controller (%s lists %q)", fsys.Unified, filepath.Join(fsys.Unified, "cgroup.controllers"), strings.TrimSpace(string(have)))
		}
		dir := fsys.Unified
		for _, elem := range strings.Split(strings.Trim(path, "/"), "/") {
			if err := enableControllers(dir, []string{"cpu"}); err != nil {
				return err
			}
			dir = filepath.Join(dir, elem)
			if err := mkdir(dir); err != nil {
				return err
			}
		}
		return writeCgroupFile(filepath.Join(dir, "cpu.max"), quota+" "+strconv.Itoa(cfsPeriod))
	}
	mnt := fsys.V1["cpu"]
	if mnt == "" {
		return errors.New("no cgroup cpu hierarchy is mounted (neither cgroup v2 at /sys/fs/cgroup nor a v1 cpu hierarchy such as /sys/fs/cgroup/cpu)")
	}
	dir := filepath.Join(mnt, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create cgroup %s: %w", dir, err)
	}
	if quota == "max" {
		quota = "-1"
	}
	write := func() error {
		return errors.Join(
			writeCgroupFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriod)),
			writeCgroupFile(filepath.Join(dir, "cpu.cfs_quota_us"), quota))
	}
	err := write()
	if err == nil || !errors.Is(err, syscall.EINVAL) {
		return err
	}
	// A cgroup below holds a larger quota: lift those, then try again.
	walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == dir {
			return err
		}
		return writeCgroupFile(filepath.Join(p, "cpu.cfs_quota_us"), "-1")
	})
	if walkErr != nil {
		return fmt.Errorf("cannot lift the quotas below %s: %w", dir, walkErr)
	}
	return write()
}
