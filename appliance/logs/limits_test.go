package logs

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/supervise"
)

func TestLimitsDefaults(t *testing.T) {
	const parent = "/gluebox/children"
	with := func(l supervise.Limits) supervise.Limits { l.CgroupParent = parent; return l }
	for _, tc := range []struct {
		name      string
		store     Config
		collector CollectorConfig
		wantStore supervise.Limits
		wantCol   supervise.Limits
	}{
		{"no cgroup parent: no limits", Config{}, CollectorConfig{}, supervise.Limits{}, supervise.Limits{}},
		{"defaults", Config{Limits: with(supervise.Limits{})}, CollectorConfig{Limits: with(supervise.Limits{})},
			with(supervise.Limits{MemoryBytes: 512 << 20, CPU: 1}), with(supervise.Limits{MemoryBytes: 256 << 20, CPU: 0.5})},
		{"follow MemoryBytes and CPUs", Config{MemoryBytes: 1 << 30, CPUs: 2, Limits: with(supervise.Limits{})},
			CollectorConfig{MemoryBytes: 512 << 20, CPUs: 2, Limits: with(supervise.Limits{})},
			with(supervise.Limits{MemoryBytes: 2 << 30, CPU: 2}), with(supervise.Limits{MemoryBytes: 1 << 30, CPU: 0.5})},
		{"explicit values win; negative means none", Config{Limits: with(supervise.Limits{MemoryBytes: -1, CPU: 3})},
			CollectorConfig{Limits: with(supervise.Limits{MemoryBytes: 100 << 20, CPU: -1})},
			with(supervise.Limits{MemoryBytes: -1, CPU: 3}), with(supervise.Limits{MemoryBytes: 100 << 20, CPU: -1})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, col := tc.store, tc.collector
			store.defaults()
			col.defaults()
			if diff := cmp.Diff(tc.wantStore, store.Limits); diff != "" {
				t.Errorf("VictoriaLogs limits (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCol, col.Limits); diff != "" {
				t.Errorf("vlagent limits (-want +got):\n%s", diff)
			}
		})
	}
	bad := Config{Binary: "/b/victoria-logs", Dir: "/d", Limits: supervise.Limits{CPU: 1}}
	checkErr(t, bad.Validate(), "logs: limits: a memory or CPU limit needs a CgroupParent")
	badCol := CollectorConfig{Binary: "/b/vlagent", Dir: "/d", Kubeconfig: "/k", StoreURL: "http://127.0.0.1:1/insert/native",
		Limits: supervise.Limits{CgroupParent: "children"}}
	checkErr(t, badCol.Validate(), "logs: collector limits: CgroupParent \"children\" must be a clean absolute cgroup path")
}

// TestStoreAndCollectorUnderTheirLimits runs VictoriaLogs and vlagent with their default hard
// limits, each in a cgroup of its own, and checks that they collect well below them.
func TestStoreAndCollectorUnderTheirLimits(t *testing.T) {
	if err := supervise.CheckCgroups(); err != nil {
		testbin.RequireReal(t, "no cgroup limits here (needs root and the memory and cpu controllers): "+err.Error())
	}
	parent := fmt.Sprintf("/gluebox-test-%d-logs", os.Getpid())
	t.Cleanup(func() {
		if err := supervise.RemoveCgroup(parent); err != nil {
			t.Error(err)
		}
	})
	dir := t.TempDir()
	l, err := New(Config{
		Binary: testbin.Path(t, "victoria-logs", "GLUEBOX_TEST_VICTORIALOGS"), Dir: filepath.Join(dir, "store"),
		Port: testbin.FreePort(t), LogFile: filepath.Join(dir, "victoria-logs.log"), Limits: supervise.Limits{CgroupParent: parent},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start(t, l, filepath.Join(dir, "victoria-logs.log"))

	api := fakeKubeAPI(t)
	kubeconfig := writeKubeconfig(t, dir, api.URL)
	logsPath := filepath.Join(dir, "containers")
	if err := os.MkdirAll(logsPath, 0o755); err != nil {
		t.Fatal(err)
	}
	line := time.Now().UTC().Format(time.RFC3339Nano) + " stdout F limited and collected\n"
	if err := os.WriteFile(filepath.Join(logsPath, "web-1_shop-prod_web-abc123.log"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	col, err := NewCollector(CollectorConfig{
		Binary: testbin.Path(t, "vlagent", "GLUEBOX_TEST_VLAGENT"), Dir: filepath.Join(dir, "collector"),
		LogFile: filepath.Join(dir, "vlagent.log"), Port: testbin.FreePort(t), Kubeconfig: kubeconfig,
		LogsPath: logsPath, StoreURL: l.InsertURL(), ExtraFlags: map[string]string{"remoteWrite.flushInterval": "200ms"},
		Limits: supervise.Limits{CgroupParent: parent},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	start(t, col, filepath.Join(dir, "vlagent.log"))
	eventually(t, 10*time.Second, "collected line", func() error {
		got, err := l.Client().Query(t.Context(), `"limited and collected"`, 10, time.Time{}, time.Time{})
		if err == nil && len(got) != 1 {
			err = fmt.Errorf("got %d lines, want 1", len(got))
		}
		return err
	})

	for _, tc := range []struct {
		st       supervise.ChildState
		name     string
		memLimit int64
		cpu      float64
	}{
		{l.State(), "victoria-logs", 512 << 20, 1},
		{col.State(), "vlagent", 256 << 20, 0.5},
	} {
		st := tc.st
		if st.Cgroup != parent+"/"+tc.name || st.MemoryLimit != tc.memLimit || st.CPULimit != tc.cpu {
			t.Errorf("%s state = %+v, want its own cgroup with %d MiB and %v CPU", tc.name, st, tc.memLimit>>20, tc.cpu)
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
