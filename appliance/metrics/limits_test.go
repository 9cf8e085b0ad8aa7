package metrics

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/supervise"
)

func TestLimitsDefaults(t *testing.T) {
	const parent = "/gluebox/children"
	for _, tc := range []struct {
		name string
		cfg  Config
		want supervise.Limits
	}{
		{"no cgroup parent: no limits", Config{}, supervise.Limits{}},
		{"defaults: 2 × 256 MiB cache budget, 1 core", Config{Limits: supervise.Limits{CgroupParent: parent}},
			supervise.Limits{MemoryBytes: 512 << 20, CPU: 1, CgroupParent: parent}},
		{"follows MemoryBytes and CPUs", Config{MemoryBytes: 1 << 30, CPUs: 2, Limits: supervise.Limits{CgroupParent: parent}},
			supervise.Limits{MemoryBytes: 2 << 30, CPU: 2, CgroupParent: parent}},
		{"never below 256 MiB", Config{MemoryBytes: 64 << 20, Limits: supervise.Limits{CgroupParent: parent}},
			supervise.Limits{MemoryBytes: 256 << 20, CPU: 1, CgroupParent: parent}},
		{"explicit values win; negative means none", Config{Limits: supervise.Limits{MemoryBytes: 300 << 20, CPU: -1, CgroupParent: parent, MemoryFlag: "--x"}},
			supervise.Limits{MemoryBytes: 300 << 20, CPU: -1, CgroupParent: parent, MemoryFlag: "--x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.defaults()
			if diff := cmp.Diff(tc.want, cfg.Limits); diff != "" {
				t.Errorf("Limits after defaults (-want +got):\n%s", diff)
			}
		})
	}
	bad := Config{Binary: "/b/victoria-metrics", Dir: "/d", Limits: supervise.Limits{MemoryBytes: 1 << 30}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "metrics: limits: a memory or CPU limit needs a CgroupParent") {
		t.Errorf("Validate of a limit without a cgroup parent = %v", err)
	}
}

// TestVictoriaMetricsUnderItsLimits runs VictoriaMetrics with its default hard limits in a
// cgroup of its own and checks that it serves well below them.
func TestVictoriaMetricsUnderItsLimits(t *testing.T) {
	if err := supervise.CheckCgroups(); err != nil {
		testbin.RequireReal(t, "no cgroup limits here (needs root and the memory and cpu controllers): "+err.Error())
	}
	parent := fmt.Sprintf("/gluebox-test-%d-metrics", os.Getpid())
	t.Cleanup(func() {
		if err := supervise.RemoveCgroup(parent); err != nil {
			t.Error(err)
		}
	})
	m := newTestMetrics(t, Config{ScrapeInterval: time.Second, Limits: supervise.Limits{CgroupParent: parent}})
	// Measure once it has scraped itself, so the figure is of a working store.
	eventually(t, 20*time.Second, "a self-scrape stored", func() error {
		r, err := m.Client().Query(context.Background(), `count(vm_app_version)`, time.Now())
		if err != nil || len(r.Series) == 0 {
			return fmt.Errorf("no self-scrape yet: %v", err)
		}
		return nil
	})
	st := m.State()
	if st.Cgroup != parent+"/victoria-metrics" || st.MemoryLimit != 512<<20 || st.CPULimit != 1 {
		t.Errorf("state = %+v, want its own cgroup with 512 MiB and 1 CPU", st)
	}
	procCgroup, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.PID))
	if err != nil || !strings.Contains(string(procCgroup), ":"+st.Cgroup+"\n") {
		t.Errorf("/proc/%d/cgroup = %q (%v), want %s in it", st.PID, procCgroup, err, st.Cgroup)
	}
	if st.MemoryUsage <= 0 || st.MemoryUsage > st.MemoryLimit/2 || st.OOMKills != 0 || st.Restarts != 0 {
		t.Errorf("state = %+v, want it serving well below its memory limit", st)
	}
	t.Logf("VictoriaMetrics uses %.1f MiB of its %d MiB limit", float64(st.MemoryUsage)/(1<<20), st.MemoryLimit>>20)
}
