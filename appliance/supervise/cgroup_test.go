package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
)

// The test binary doubles as the child of the cgroup tests: with GLUEBOX_SUPERVISE_HELPER set
// it runs helperMain instead of the tests.
func TestMain(m *testing.M) {
	if mode := os.Getenv("GLUEBOX_SUPERVISE_HELPER"); mode != "" {
		helperMain(mode)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperMain waits until it runs in the cgroup GLUEBOX_TEST_CGROUP (supervise moves a cgroup v1
// child there just after its start), then in mode "hold" allocates 8 MiB and sleeps; in mode
// "alloc" it allocates until the kernel kills it, unless the file GLUEBOX_TEST_MARKER exists
// (the restart), in which case it sleeps without allocating.
func helperMain(mode string) {
	want, ctrl := os.Getenv("GLUEBOX_TEST_CGROUP"), os.Getenv("GLUEBOX_TEST_CONTROLLER")
	for i := 0; ; i++ {
		b, _ := os.ReadFile("/proc/self/cgroup")
		if cgroupOf(string(b), ctrl) == want {
			break
		}
		if i == 400 {
			fmt.Printf("never moved into %s (controller %q): %s\n", want, ctrl, b)
			os.Exit(2)
		}
		time.Sleep(5 * time.Millisecond)
	}
	touch := func(n int) [][]byte {
		var keep [][]byte
		for range n {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		return keep
	}
	marker := os.Getenv("GLUEBOX_TEST_MARKER")
	if _, err := os.Stat(marker); mode == "hold" || err == nil {
		var keep [][]byte
		if mode == "hold" {
			keep = touch(8)
		}
		fmt.Println("holding")
		time.Sleep(time.Hour)
		fmt.Println(len(keep))
		return
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	fmt.Println("allocating")
	keep := touch(1024)
	fmt.Printf("allocated %d MiB and was not killed\n", len(keep))
	os.Exit(3)
}

// cgroupOf returns the cgroup of controller in /proc/<pid>/cgroup's content; controller ""
// means the unified (v2) hierarchy, the "0::" line.
func cgroupOf(procCgroup, controller string) string {
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if controller == "" && parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if controller != "" && c == controller {
				return parts[2]
			}
		}
	}
	return ""
}

// helperChild is a ChildConfig running the test binary as helperMain in mode, expecting to be
// put into the cgroup want (as seen in the hierarchy of controller, "" for v2). It is ready
// once the helper prints "holding".
func helperChild(t *testing.T, mode, want, controller string) ChildConfig {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := ChildConfig{
		Name: filepath.Base(want), Path: exe, LogFile: filepath.Join(dir, "child.log"),
		Env: []string{"GLUEBOX_SUPERVISE_HELPER=" + mode, "GLUEBOX_TEST_CGROUP=" + want,
			"GLUEBOX_TEST_CONTROLLER=" + controller, "GLUEBOX_TEST_MARKER=" + filepath.Join(dir, "allocated")},
		ReadyTimeout: 10 * time.Second,
	}
	cfg.Ready = func(context.Context) error {
		if b, _ := os.ReadFile(cfg.LogFile); !strings.Contains(string(b), "holding") {
			return errors.New("not holding yet")
		}
		return nil
	}
	return cfg
}

// cgroupEnv selects the hierarchies the real-process cgroup tests use:
//   - empty: the host's own, as gluebox finds them (detectCgroupFS);
//   - "v1" or "v2": the host's own, which must be of that version, so that a CI host with
//     cgroup v2 (GLUEBOX_TEST_CGROUP=v2) cannot quietly run the v1 path, nor a v1 host the v2 one;
//   - "v2:<mount point>": a cgroup v2 hierarchy mounted there (it needs the memory and cpu
//     controllers for the limit tests).
//
// This machine has cgroup v1 with the controllers, and a "hybrid" v2 hierarchy without them,
// so only the v1 path runs here for real; the v2 path is covered by fake trees (exact files and
// values) and TestChildClonedIntoV2Cgroup (placement only). On a v2 host the same tests run
// the v2 path unchanged.
const cgroupEnv = "GLUEBOX_TEST_CGROUP"

// testCgroupFS returns the hierarchies cgroupEnv selects.
func testCgroupFS(t *testing.T) cgroupFS {
	t.Helper()
	sel := os.Getenv(cgroupEnv)
	if mnt, ok := strings.CutPrefix(sel, "v2:"); ok {
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); err != nil || st.Type != cgroup2SuperMagic {
			t.Fatalf("%s=%s: no cgroup v2 hierarchy mounted at %s (statfs: %v)", cgroupEnv, sel, mnt, err)
		}
		return cgroupFS{Unified: mnt}
	}
	fsys, err := detectCgroupFS()
	if err != nil {
		testbin.RequireReal(t, "cannot find the cgroup hierarchies: "+err.Error())
	}
	got := "v1"
	if fsys.Unified != "" {
		got = "v2"
	}
	if sel != "" && sel != got {
		t.Fatalf("%s=%s but this host runs cgroup %s", cgroupEnv, sel, got)
	}
	return fsys
}

// testCgroupParent returns a cgroup parent of the test's own in the hierarchies testCgroupFS
// selects, removed (with everything below it) when the test ends. It skips the test (fails
// under GLUEBOX_REQUIRE_REAL=1) unless those hierarchies can apply limits.
func testCgroupParent(t *testing.T) (string, cgroupFS) {
	t.Helper()
	if os.Geteuid() != 0 {
		testbin.RequireReal(t, "children cannot get cgroup limits: the tests do not run as root")
	}
	fsys := testCgroupFS(t)
	if err := checkCgroups(fsys); err != nil {
		testbin.RequireReal(t, "children cannot get cgroup limits here (needs root and the memory and cpu cgroup controllers): "+err.Error())
	}
	parent := fmt.Sprintf("/gluebox-test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	t.Cleanup(func() {
		if err := removeCgroup(fsys, parent); err != nil {
			t.Errorf("cannot remove the test's cgroups: %v", err)
		}
	})
	return parent, fsys
}

// childIn returns a Child for cfg that finds its cgroup hierarchies at fsys.
func childIn(fsys cgroupFS, cfg ChildConfig, log *slog.Logger) *Child {
	c := NewChild(cfg, log)
	c.detect = func() (cgroupFS, error) { return fsys, nil }
	return c
}

// syncBuffer is a bytes.Buffer a logger may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestChildRunsInItsCgroupWithLimits(t *testing.T) {
	parent, fsys := testCgroupParent(t)
	want := parent + "/limited"
	ctrl := "memory"
	if fsys.Unified != "" {
		ctrl = ""
	}
	cfg := helperChild(t, "hold", want, ctrl)
	cfg.Limits = Limits{MemoryBytes: 64 << 20, CPU: 0.5, CgroupParent: parent}
	c, cancel, done := startChild(t, childIn(fsys, cfg, slog.New(slog.DiscardHandler)))
	waitReady(t, c, 10*time.Second)
	st := c.State()

	procCgroup := readFile(t, fmt.Sprintf("/proc/%d/cgroup", st.PID))
	var files map[string]string
	if fsys.Unified != "" {
		dir := filepath.Join(fsys.Unified, want)
		files = map[string]string{filepath.Join(dir, "memory.max"): "67108864", filepath.Join(dir, "cpu.max"): "50000 100000"}
		if got := cgroupOf(procCgroup, ""); got != want {
			t.Errorf("child's cgroup = %q, want %q (/proc/pid/cgroup: %s)", got, want, procCgroup)
		}
	} else {
		mem, cpu := filepath.Join(fsys.V1["memory"], want), filepath.Join(fsys.V1["cpu"], want)
		files = map[string]string{filepath.Join(mem, "memory.limit_in_bytes"): "67108864",
			filepath.Join(cpu, "cpu.cfs_quota_us"): "50000", filepath.Join(cpu, "cpu.cfs_period_us"): "100000"}
		for _, ctrl := range []string{"memory", "cpu"} {
			if got := cgroupOf(procCgroup, ctrl); got != want {
				t.Errorf("child's %s cgroup = %q, want %q (/proc/pid/cgroup: %s)", ctrl, got, want, procCgroup)
			}
		}
	}
	for f, v := range files {
		if got := strings.TrimSpace(readFile(t, f)); got != v {
			t.Errorf("%s = %q, want %q", f, got, v)
		}
	}
	if st.Cgroup != want || st.MemoryLimit != 64<<20 || st.CPULimit != 0.5 || st.OOMKills != 0 {
		t.Errorf("state = %+v, want cgroup %s, 64 MiB, 0.5 CPU, no OOM kills", st, want)
	}
	if st.MemoryUsage < 8<<20 || st.MemoryUsage > 64<<20 {
		t.Errorf("memory usage %d, want the helper's 8 MiB and more, below the limit", st.MemoryUsage)
	}

	cancel()
	if err := waitErr(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	for f := range files {
		if _, err := os.Stat(filepath.Dir(f)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s still exists after Run returned (%v)", filepath.Dir(f), err)
		}
	}
	if st := c.State(); st.MemoryUsage != 0 || st.State != "stopped" {
		t.Errorf("state after stop = %+v, want stopped and no memory use", st)
	}
}

func TestChildKilledByItsMemoryLimitIsRestarted(t *testing.T) {
	parent, fsys := testCgroupParent(t)
	want := parent + "/hungry"
	ctrl := "memory"
	if fsys.Unified != "" {
		ctrl = ""
	}
	cfg := helperChild(t, "alloc", want, ctrl)
	cfg.MaxRestarts = 2
	cfg.Limits = Limits{MemoryBytes: 32 << 20, CgroupParent: parent, MemoryFlag: "--test-memory-limit"}
	var logs syncBuffer
	c, cancel, done := startChild(t, childIn(fsys, cfg, slog.New(slog.NewTextHandler(&logs, nil))))

	// The first run is killed while allocating; the restart sees the marker and holds.
	waitReady(t, c, 10*time.Second)
	st := c.State()
	if st.OOMKills != 1 || st.Restarts != 1 || st.State != "running" {
		t.Errorf("state = %+v, want running after 1 restart and 1 OOM kill", st)
	}
	log := readFile(t, cfg.LogFile)
	if !strings.Contains(log, "allocating") || strings.Contains(log, "not killed") {
		t.Errorf("child log %q: want the first run killed while allocating", log)
	}
	if want := "killed by its memory limit (32 MiB); raise --test-memory-limit"; !strings.Contains(logs.String(), want) {
		t.Errorf("supervisor log does not warn %q:\n%s", want, logs.String())
	}
	if !strings.Contains(logs.String(), "signal: killed") {
		t.Errorf("supervisor log does not carry the exit status:\n%s", logs.String())
	}

	cancel()
	if err := waitErr(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if st := c.State(); st.OOMKills != 1 {
		t.Errorf("OOM kills after stop = %d, want 1 kept", st.OOMKills)
	}
	for _, d := range []string{fsys.Unified, fsys.V1["memory"]} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, want)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s still exists after Run returned (%v)", filepath.Join(d, want), err)
		}
		break
	}
}

// TestChildClonedIntoV2Cgroup starts a child straight into a cgroup v2 directory (clone3
// CLONE_INTO_CGROUP). On a cgroup v1 host with a "hybrid" v2 hierarchy at
// /sys/fs/cgroup/unified (no controllers) that is all that can be checked: placement and
// removal, and that limits there are refused.
func TestChildClonedIntoV2Cgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		testbin.RequireReal(t, "needs root to create cgroups")
	}
	var root string
	for _, r := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if syscall.Statfs(r, &st) == nil && st.Type == cgroup2SuperMagic {
			root = r
			break
		}
	}
	if root == "" {
		testbin.RequireReal(t, "no cgroup v2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	parent := fmt.Sprintf("/gluebox-test-%d-v2", os.Getpid())
	want := parent + "/cloned"
	t.Cleanup(func() {
		for _, d := range []string{want, parent} {
			if err := removeCgroupDir(filepath.Join(root, d)); err != nil {
				t.Error(err)
			}
		}
	})
	v2 := func() (cgroupFS, error) { return cgroupFS{Unified: root}, nil }

	cfg := helperChild(t, "hold", want, "")
	cfg.Limits = Limits{CgroupParent: parent}
	c := NewChild(cfg, slog.New(slog.DiscardHandler))
	c.detect = v2
	_, cancel, done := startChild(t, c)
	waitReady(t, c, 10*time.Second)
	st := c.State()
	if got := cgroupOf(readFile(t, fmt.Sprintf("/proc/%d/cgroup", st.PID)), ""); got != want {
		t.Errorf("child's v2 cgroup = %q, want %q", got, want)
	}
	if c.noCloneInto {
		t.Error("clone3 into the cgroup failed; the child was moved after its start")
	}
	cancel()
	if err := waitErr(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, want)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cgroup %s still exists after Run returned (%v)", want, err)
	}

	ctrls, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if strings.Contains(string(ctrls), "memory") {
		return
	}
	cfg = helperChild(t, "hold", want, "")
	cfg.Limits = Limits{MemoryBytes: 64 << 20, CgroupParent: parent}
	c = NewChild(cfg, slog.New(slog.DiscardHandler))
	c.detect = v2
	_, _, done = startChild(t, c)
	err := waitErr(t, done, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "has no memory controller") {
		t.Errorf("Run with a memory limit on a v2 hierarchy without the memory controller = %v, want an error saying so", err)
	}
}

func TestChildLimitsThatCannotBeApplied(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits Limits
		fsys   cgroupFS
		want   []string
	}{
		{"no memory hierarchy", Limits{MemoryBytes: 64 << 20, CgroupParent: "/gluebox-test"}, cgroupFS{V1: map[string]string{"cpu": "/sys/fs/cgroup/cpu"}},
			[]string{"bounded: cannot apply its resource limits: no cgroup memory hierarchy is mounted", "gluebox check"}},
		{"no cpu hierarchy", Limits{CPU: 1, CgroupParent: "/gluebox-test"}, cgroupFS{V1: map[string]string{"memory": "/sys/fs/cgroup/memory"}},
			[]string{"no cgroup cpu hierarchy is mounted"}},
		{"no parent", Limits{MemoryBytes: 64 << 20}, cgroupFS{},
			[]string{"bounded: limits: a memory or CPU limit needs a CgroupParent"}},
		{"cgroup fs not writable", Limits{MemoryBytes: 64 << 20, CgroupParent: "/gluebox-test"}, cgroupFS{V1: map[string]string{"memory": "/sys/gluebox-no-such-dir"}},
			[]string{"cannot create cgroup /sys/gluebox-no-such-dir/gluebox-test/bounded", "must run as root with a writable cgroup file system"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := shChild(t, "echo started; exec sleep 100")
			cfg.Name = "bounded"
			cfg.Limits = tc.limits
			c := NewChild(cfg, slog.New(slog.DiscardHandler))
			c.detect = func() (cgroupFS, error) { return tc.fsys, nil }
			_, _, done := startChild(t, c)
			err := waitErr(t, done, 5*time.Second)
			if err == nil {
				t.Fatal("Run = nil, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if st := c.State(); st.State != "failed" || st.Restarts != 0 || st.LastError != err.Error() {
				t.Errorf("state = %+v, want failed at once with the error", st)
			}
			if b, _ := os.ReadFile(cfg.LogFile); len(b) != 0 {
				t.Errorf("the program ran without its limits: %q", b)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo string
		want            map[string]string
	}{
		{"v1, cpu and cpuacct apart (this project's VM)", `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`, map[string]string{"cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "cpuset": "/sys/fs/cgroup/cpuset", "memory": "/sys/fs/cgroup/memory"}},
		{"v1 co-mounted, optional fields, escapes, a second mount", `25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 master:3 - cgroup cgroup rw,memory
27 24 0:23 /docker /mnt/my\040cgroups ro shared:11 - cgroup cgroup ro,memory
28 24 0:24 / /sys/fs/cgroup/net_cls rw - cgroup cgroup rw,net_cls,release_agent=/x
`, map[string]string{"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct", "memory": "/sys/fs/cgroup/memory", "net_cls": "/sys/fs/cgroup/net_cls"}},
		{"only cgroup2", "30 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", map[string]string{}},
		{"garbage", "not a mountinfo line\n- - -\n", map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tc.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.V1); diff != "" || got.Unified != "" {
				t.Errorf("v1 hierarchies (-want +got):\n%s; unified %q", diff, got.Unified)
			}
		})
	}
	if got := unescapeMount(`/a\040b\134c\0`); got != `/a b\c\0` {
		t.Errorf("unescapeMount = %q", got)
	}
}

func TestCgroupPaths(t *testing.T) {
	v2root := t.TempDir()
	if err := os.WriteFile(filepath.Join(v2root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := t.TempDir()
	if err := os.WriteFile(filepath.Join(bare, "cgroup.controllers"), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := cgroupFS{V1: map[string]string{"memory": "/sys/fs/cgroup/memory", "cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct"}}
	v1co := cgroupFS{V1: map[string]string{"memory": "/cg/memory,cpu", "cpu": "/cg/memory,cpu"}}
	both := Limits{MemoryBytes: 256 << 20, CPU: 0.5, CgroupParent: "/gluebox/children"}
	for _, tc := range []struct {
		name           string
		fsys           cgroupFS
		limits         Limits
		memDir, cpuDir string
		dirs           []string
		wantErr        string
	}{
		{"v1 memory and cpu", v1, both, "/sys/fs/cgroup/memory/gluebox/children/vm", "/sys/fs/cgroup/cpu/gluebox/children/vm",
			[]string{"/sys/fs/cgroup/memory/gluebox/children/vm", "/sys/fs/cgroup/cpu/gluebox/children/vm"}, ""},
		{"v1 memory only: no cpu cgroup", v1, Limits{MemoryBytes: 256 << 20, CgroupParent: "/gluebox/children"},
			"/sys/fs/cgroup/memory/gluebox/children/vm", "", []string{"/sys/fs/cgroup/memory/gluebox/children/vm"}, ""},
		{"v1 no limits: memory for accounting", v1, Limits{CgroupParent: "/g"}, "/sys/fs/cgroup/memory/g/vm", "", []string{"/sys/fs/cgroup/memory/g/vm"}, ""},
		{"v1 co-mounted: one dir", v1co, both, "/cg/memory,cpu/gluebox/children/vm", "/cg/memory,cpu/gluebox/children/vm",
			[]string{"/cg/memory,cpu/gluebox/children/vm"}, ""},
		{"v1 CPU only without memory hierarchy", cgroupFS{V1: map[string]string{"cpu": "/c"}}, Limits{CPU: 2, CgroupParent: "/"}, "", "/c/vm", []string{"/c/vm"}, ""},
		{"v1 no memory hierarchy", cgroupFS{V1: map[string]string{"cpu": "/c"}}, both, "", "", nil, "no cgroup memory hierarchy"},
		{"v1 no cpu hierarchy", cgroupFS{V1: map[string]string{"memory": "/m"}}, both, "", "", nil, "no cgroup cpu hierarchy"},
		{"v2", cgroupFS{Unified: v2root}, both, v2root + "/gluebox/children/vm", v2root + "/gluebox/children/vm", []string{v2root + "/gluebox/children/vm"}, ""},
		{"v2 no memory controller, no limits", cgroupFS{Unified: bare}, Limits{CgroupParent: "/p"}, "", "", []string{bare + "/p/vm"}, ""},
		{"v2 no memory controller", cgroupFS{Unified: bare}, both, "", "", nil, "has no memory controller"},
		{"v2 no cpu controller", cgroupFS{Unified: bare}, Limits{CPU: 1, CgroupParent: "/p"}, "", "", nil, "has no cpu controller"},
		{"relative parent", v1, Limits{CgroupParent: "gluebox"}, "", "", nil, "clean absolute cgroup path"},
		{"unclean parent", v1, Limits{CgroupParent: "/gluebox/../x"}, "", "", nil, "clean absolute cgroup path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cg, err := newCgroup(tc.fsys, tc.limits, "vm")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cg.memDir != tc.memDir || cg.cpuDir != tc.cpuDir {
				t.Errorf("memDir, cpuDir = %q, %q, want %q, %q", cg.memDir, cg.cpuDir, tc.memDir, tc.cpuDir)
			}
			if diff := cmp.Diff(tc.dirs, cg.dirs()); diff != "" {
				t.Errorf("dirs (-want +got):\n%s", diff)
			}
		})
	}
	for _, name := range []string{"", ".", "..", "a/b"} {
		if _, err := newCgroup(v1, both, name); err == nil {
			t.Errorf("child name %q accepted as a cgroup name", name)
		}
	}
}

// TestCgroupCreateV2Writes checks the files create writes in cgroup v2 on a fake hierarchy
// (plain files): controllers enabled down the parent path, memory.max and cpu.max.
func TestCgroupCreateV2Writes(t *testing.T) {
	root := t.TempDir()
	leaf := filepath.Join(root, "gluebox", "children", "vm")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"cgroup.controllers":                         "cpu memory pids",
		"cgroup.subtree_control":                     "cpu memory",
		"gluebox/cgroup.subtree_control":             "memory",
		"gluebox/children/cgroup.subtree_control":    "",
		"gluebox/children/vm/memory.max":             "max",
		"gluebox/children/vm/cpu.max":                "max 100000",
		"gluebox/children/vm/memory.events":          "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n",
		"gluebox/children/vm/memory.current":         "1234",
		"gluebox/children/vm/cgroup.procs":           "",
		"gluebox/children/vm/cgroup.subtree_control": "",
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(root, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cg, err := newCgroup(cgroupFS{Unified: root}, Limits{MemoryBytes: 300 << 20, CPU: 1.5, CgroupParent: "/gluebox/children"}, "vm")
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.create(); err != nil {
		t.Fatal(err)
	}
	// Every file of the tree, so a write to any other file shows too.
	want := maps.Clone(files)
	maps.Copy(want, map[string]string{
		"gluebox/cgroup.subtree_control":          "+cpu", // cgroup.subtree_control has both already: not written
		"gluebox/children/cgroup.subtree_control": "+memory +cpu",
		"gluebox/children/vm/memory.max":          "314572800",
		"gluebox/children/vm/cpu.max":             "150000 100000",
	})
	if diff := cmp.Diff(want, treeFiles(t, root)); diff != "" {
		t.Errorf("cgroup tree after create (-want +got):\n%s", diff)
	}
	if cg.oomBase != 2 {
		t.Errorf("OOM kills before the child = %d, want 2 (memory.events)", cg.oomBase)
	}
	if u, err := cg.usage(); err != nil || u != 1234 {
		t.Errorf("usage = %d, %v; want 1234 (memory.current)", u, err)
	}
	if err := cg.enter(42); err != nil {
		t.Fatal(err)
	}
	want["gluebox/children/vm/cgroup.procs"] = "42"
	if diff := cmp.Diff(want, treeFiles(t, root)); diff != "" {
		t.Errorf("cgroup tree after enter (-want +got):\n%s", diff)
	}
}

// treeFiles returns every regular file below root (by slash path relative to root) with its
// content.
func treeFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = readFile(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLimitsValidate(t *testing.T) {
	for _, tc := range []struct {
		l       Limits
		wantErr string
	}{
		{Limits{}, ""},
		{Limits{MemoryBytes: -1, CPU: -1}, ""},
		{Limits{CgroupParent: "/gluebox/children"}, ""},
		{Limits{MemoryBytes: 1 << 20, CPU: 0.01, CgroupParent: "/"}, ""},
		{Limits{MemoryBytes: 1 << 30}, "needs a CgroupParent"},
		{Limits{CPU: 1}, "needs a CgroupParent"},
		{Limits{MemoryBytes: 512, CgroupParent: "/g"}, "below 1 MiB"},
		{Limits{CPU: 0.001, CgroupParent: "/g"}, "at least 0.01"},
		{Limits{CgroupParent: "g/c"}, "clean absolute"},
		{Limits{CgroupParent: "/g/"}, "clean absolute"},
	} {
		err := tc.l.Validate()
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v.Validate() = %v, want %q", tc.l, err, tc.wantErr)
		}
	}
}

func TestMiB(t *testing.T) {
	for b, want := range map[int64]string{512 << 20: "512 MiB", 1536 << 10: "1.5 MiB", 2 << 30: "2048 MiB"} {
		if got := mib(b); got != want {
			t.Errorf("mib(%d) = %q, want %q", b, got, want)
		}
	}
}

func TestLimitCgroupCPUBoundsTheChildrenTogether(t *testing.T) {
	parent, fsys := testCgroupParent(t)
	// quota returns the CFS quota of cgroup p in microseconds per period, "-1" for none.
	quota := func(p string) string {
		t.Helper()
		if fsys.Unified != "" {
			q, _, _ := strings.Cut(strings.TrimSpace(readFile(t, filepath.Join(fsys.Unified, p, "cpu.max"))), " ")
			if q == "max" {
				q = "-1"
			}
			return q
		}
		return strings.TrimSpace(readFile(t, filepath.Join(fsys.V1["cpu"], p, "cpu.cfs_quota_us")))
	}
	if err := limitCgroupCPU(fsys, parent, 1.5); err != nil {
		t.Fatal(err)
	}
	if got := quota(parent); got != "150000" {
		t.Fatalf("group quota %s, want 150000", got)
	}
	// A child may ask for up to the group's limit.
	cg, err := newCgroup(fsys, Limits{CPU: 1.5, CgroupParent: parent}, "child")
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.create(); err != nil {
		t.Fatalf("a child at the group's limit: %v", err)
	}
	// Lowering the group below a child's quota: v1 refuses a parent quota below a child's, so
	// the child's is lifted; v2 bounds the child by its parent and keeps the child's own.
	if err := limitCgroupCPU(fsys, parent, 0.5); err != nil {
		t.Fatal(err)
	}
	wantChild := "-1"
	if fsys.Unified != "" {
		wantChild = "150000"
	}
	if got, child := quota(parent), quota(parent+"/child"); got != "50000" || child != wantChild {
		t.Fatalf("after lowering: group %s, child %s; want 50000 and %s", got, child, wantChild)
	}
	if err := limitCgroupCPU(fsys, parent, 0); err != nil {
		t.Fatal(err)
	}
	if got := quota(parent); got != "-1" {
		t.Fatalf("after removing the limit: group quota %s, want -1", got)
	}
	for _, bad := range []string{"relative", "/", "/a/../b"} {
		if err := LimitCgroupCPU(bad, 1); err == nil {
			t.Errorf("LimitCgroupCPU(%q) accepted", bad)
		}
	}
	if err := LimitCgroupCPU(parent, 0.001); err == nil || !strings.Contains(err.Error(), "at least 0.01") {
		t.Errorf("a 0.001-core limit: %v", err)
	}
}

func TestLimitCgroupCPUV2Writes(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"cgroup.controllers":                      "cpu memory",
		"cgroup.subtree_control":                  "memory",
		"gluebox/cgroup.subtree_control":          "cpu",
		"gluebox/children/cgroup.subtree_control": "",
		"gluebox/children/cpu.max":                "max 100000",
	}
	for f, v := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := limitCgroupCPU(cgroupFS{Unified: root}, "/gluebox/children", 1.25); err != nil {
		t.Fatal(err)
	}
	want := maps.Clone(files)
	maps.Copy(want, map[string]string{
		"cgroup.subtree_control":   "+cpu", // gluebox/cgroup.subtree_control has cpu already: not written
		"gluebox/children/cpu.max": "125000 100000",
	})
	if diff := cmp.Diff(want, treeFiles(t, root)); diff != "" {
		t.Errorf("cgroup tree after a 1.25-core limit (-want +got):\n%s", diff)
	}
	if err := limitCgroupCPU(cgroupFS{Unified: root}, "/gluebox/children", 0); err != nil {
		t.Fatal(err)
	}
	want["gluebox/children/cpu.max"] = "max 100000"
	if diff := cmp.Diff(want, treeFiles(t, root)); diff != "" {
		t.Errorf("cgroup tree after removing the limit (-want +got):\n%s", diff)
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("memory"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := limitCgroupCPU(cgroupFS{Unified: root}, "/gluebox/children", 1); err == nil || !strings.Contains(err.Error(), "no cpu controller") {
		t.Errorf("without the cpu controller: %v", err)
	}
}
