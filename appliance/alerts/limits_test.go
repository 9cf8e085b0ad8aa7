package alerts

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/appliance/supervise"
)

func TestLimitsDefaults(t *testing.T) {
	const parent = "/gluebox/children"
	for _, tc := range []struct {
		name string
		in   supervise.Limits
		want supervise.Limits
	}{
		{"no cgroup parent: no limits", supervise.Limits{}, supervise.Limits{}},
		{"defaults", supervise.Limits{CgroupParent: parent}, supervise.Limits{MemoryBytes: 256 << 20, CPU: 0.5, CgroupParent: parent}},
		{"explicit values win; negative means none", supervise.Limits{MemoryBytes: -1, CPU: 2, CgroupParent: parent},
			supervise.Limits{MemoryBytes: -1, CPU: 2, CgroupParent: parent}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			am, va := AlertmanagerConfig{Limits: tc.in}, VMAlertConfig{Limits: tc.in}
			am.defaults()
			va.defaults()
			if diff := cmp.Diff(tc.want, am.Limits); diff != "" {
				t.Errorf("Alertmanager limits (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, va.Limits); diff != "" {
				t.Errorf("vmalert limits (-want +got):\n%s", diff)
			}
		})
	}
	am := AlertmanagerConfig{Binary: "/b/alertmanager", Dir: "/d", Limits: supervise.Limits{MemoryBytes: 1 << 30}}
	if err := am.Validate(); err == nil || !strings.Contains(err.Error(), "alerts: alertmanager limits: a memory or CPU limit needs a CgroupParent") {
		t.Errorf("Alertmanager Validate = %v", err)
	}
	va := VMAlertConfig{Binary: "/b/vmalert", Dir: "/d", MetricsURL: "http://127.0.0.1:1", AlertmanagerURL: "http://127.0.0.1:2",
		Limits: supervise.Limits{CPU: 0.001, CgroupParent: parent}}
	if err := va.Validate(); err == nil || !strings.Contains(err.Error(), "alerts: vmalert limits: CPU 0.001 must be at least 0.01 cores") {
		t.Errorf("vmalert Validate = %v", err)
	}
}

// TestAlertingUnderItsLimits runs Alertmanager and vmalert (against VictoriaMetrics, unlimited
// here) with their default hard limits, each in a cgroup of its own, and checks that the
// heartbeat rule is evaluated and routed well below them.
func TestAlertingUnderItsLimits(t *testing.T) {
	if err := supervise.CheckCgroups(); err != nil {
		testbin.RequireReal(t, "no cgroup limits here (needs root and the memory and cpu controllers): "+err.Error())
	}
	parent := fmt.Sprintf("/gluebox-test-%d-alerts", os.Getpid())
	t.Cleanup(func() {
		if err := supervise.RemoveCgroup(parent); err != nil {
			t.Error(err)
		}
	})
	limits := supervise.Limits{CgroupParent: parent}
	vmDir := t.TempDir()
	vm, err := metrics.New(metrics.Config{
		Binary: testbin.Path(t, "victoria-metrics", "GLUEBOX_TEST_VICTORIAMETRICS"), Dir: vmDir,
		LogFile: filepath.Join(vmDir, "vm.log"), Port: testbin.FreePort(t),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, vm, filepath.Join(vmDir, "vm.log"))

	beat := newHook(t)
	amDir := t.TempDir()
	amCfg := AlertmanagerConfig{
		Binary: testbin.Path(t, "alertmanager", "GLUEBOX_TEST_ALERTMANAGER"), Dir: amDir,
		LogFile: filepath.Join(amDir, "alertmanager.log"), Port: testbin.FreePort(t), Limits: limits,
		Notify: Notify{GroupWait: time.Second, GroupInterval: time.Second, Heartbeat: Heartbeat{URL: beat.URL, Interval: 2 * time.Second}},
	}
	am, err := NewAlertmanager(amCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, am, amCfg.LogFile)
	vaDir := t.TempDir()
	vaCfg := VMAlertConfig{
		Binary: testbin.Path(t, "vmalert", "GLUEBOX_TEST_VMALERT"), Dir: vaDir,
		LogFile: filepath.Join(vaDir, "vmalert.log"), Port: testbin.FreePort(t), Limits: limits,
		MetricsURL: vm.URL(), AlertmanagerURL: am.URL(), EvaluationInterval: time.Second,
	}
	va, err := NewVMAlert(vaCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, va, vaCfg.LogFile)
	waitNotification(t, beat, HeartbeatAlert, "firing", 15*time.Second)

	for _, tc := range []struct {
		st   supervise.ChildState
		name string
	}{{am.State(), "alertmanager"}, {va.State(), "vmalert"}} {
		st := tc.st
		if st.Cgroup != parent+"/"+tc.name || st.MemoryLimit != 256<<20 || st.CPULimit != 0.5 {
			t.Errorf("%s state = %+v, want its own cgroup with 256 MiB and 0.5 CPU", tc.name, st)
		}
		procCgroup, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.PID))
		if err != nil || !strings.Contains(string(procCgroup), ":"+st.Cgroup+"\n") {
			t.Errorf("/proc/%d/cgroup = %q (%v), want %s in it", st.PID, procCgroup, err, st.Cgroup)
		}
		if st.MemoryUsage <= 0 || st.MemoryUsage > st.MemoryLimit/2 || st.OOMKills != 0 || st.Restarts != 0 {
			t.Errorf("%s state = %+v, want it serving well below its memory limit", tc.name, st)
		}
		t.Logf("%s uses %.1f MiB of its %d MiB limit", tc.name, float64(st.MemoryUsage)/(1<<20), st.MemoryLimit>>20)
	}
}
