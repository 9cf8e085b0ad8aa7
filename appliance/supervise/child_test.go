package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"gopkg.in/natefinch/lumberjack.v2"
)

// runChild starts a Child for cfg and returns it with the cancel of its context and the
// channel its Run result arrives on (once). Cleanup cancels it and waits for Run to return.
func runChild(t *testing.T, cfg ChildConfig) (*Child, context.CancelFunc, <-chan error) {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test-child"
	}
	return startChild(t, NewChild(cfg, slog.New(slog.DiscardHandler)))
}

// startChild runs c as runChild does.
func startChild(t *testing.T, c *Child) (*Child, context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	returned := make(chan struct{})
	go func() {
		err := c.Run(ctx)
		close(returned)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-returned:
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return c, cancel, done
}

// shChild is a ChildConfig that runs script with /bin/sh and logs to a file in a temp dir.
func shChild(t *testing.T, script string) ChildConfig {
	t.Helper()
	return ChildConfig{Path: "/bin/sh", Args: []string{"-c", script}, LogFile: filepath.Join(t.TempDir(), "logs", "child.log")}
}

func waitErr(t *testing.T, done <-chan error, within time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(within):
		t.Fatalf("Run did not return within %s", within)
		return nil
	}
}

func waitReady(t *testing.T, c *Child, within time.Duration) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(within):
		t.Fatalf("child not ready within %s; state %+v", within, c.State())
	}
}

// waitState polls until the child's state is want (with a pid unless want is "restarting").
func waitState(t *testing.T, c *Child, want string, within time.Duration) ChildState {
	t.Helper()
	var st ChildState
	testbin.Eventually(t, within, "child state "+want, func() bool {
		st = c.State()
		return st.State == want && (st.PID != 0 || want == "restarting")
	})
	return st
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestChildGivesUpAfterMaxRestarts(t *testing.T) {
	cfg := shChild(t, "echo boom; exit 3")
	cfg.MaxRestarts = 2
	c, _, done := runChild(t, cfg)

	err := waitErr(t, done, 10*time.Second)
	if err == nil {
		t.Fatal("Run returned nil for a program that keeps dying")
	}
	for _, want := range []string{"test-child keeps failing (3 times in a row)", "exit status 3", cfg.LogFile} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if got := strings.Count(readFile(t, cfg.LogFile), "boom"); got != 3 {
		t.Errorf("program ran %d times, want 3 (1 start + MaxRestarts 2)", got)
	}
	st := c.State()
	if st.State != "failed" || st.Restarts != 2 || st.PID != 0 || !strings.Contains(st.LastError, "exit status 3") {
		t.Errorf("state = %+v, want failed with 2 restarts and the last error", st)
	}
}

func TestChildRestartsWithBackoff(t *testing.T) {
	cfg := shChild(t, "echo run; exit 1")
	cfg.MaxRestarts = 3
	start := time.Now()
	_, _, done := runChild(t, cfg)
	if err := waitErr(t, done, 15*time.Second); err == nil {
		t.Fatal("want an error")
	}
	// Three pauses between four runs: 0.5s + 1s + 2s.
	if took := time.Since(start); took < 3500*time.Millisecond {
		t.Errorf("four runs took %s; the backoff (0.5s, 1s, 2s) must make it at least 3.5s", took)
	}
}

func TestChildNotReadyInTimeIsKilledAndCounted(t *testing.T) {
	cfg := shChild(t, "exec sleep 100")
	cfg.MaxRestarts = 1
	cfg.ReadyTimeout = 200 * time.Millisecond
	cfg.Ready = func(ctx context.Context) error { return errors.New("never") }
	c, _, done := runChild(t, cfg)
	err := waitErr(t, done, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("want an error saying the unready child was killed, got %v", err)
	}
	select {
	case <-c.Ready():
		t.Error("Ready closed although the probe never passed")
	default:
	}
}

func TestChildReadyClosesOnceProbePasses(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "serving")
	cfg := shChild(t, "sleep 0.3; touch "+flag+"; exec sleep 100")
	var probes atomic.Int32
	cfg.Ready = func(ctx context.Context) error {
		probes.Add(1)
		_, err := os.Stat(flag)
		return err
	}
	c, cancel, done := runChild(t, cfg)

	waitState(t, c, "starting", 5*time.Second)
	waitReady(t, c, 10*time.Second)
	if _, err := os.Stat(flag); err != nil {
		t.Fatalf("Ready closed before the probe could pass: %v", err)
	}
	if n := probes.Load(); n < 2 {
		t.Errorf("probe ran %d times; it must be retried until it passes", n)
	}
	st := c.State()
	if st.State != "running" || st.PID == 0 || st.LastError != "" {
		t.Errorf("state after ready = %+v, want running with a pid", st)
	}

	cancel()
	if err := waitErr(t, done, 10*time.Second); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if !processGone(st.PID) {
		t.Errorf("pid %d still exists after Run returned", st.PID)
	}
	if st := c.State(); st.State != "stopped" || st.PID != 0 {
		t.Errorf("state after stop = %+v, want stopped", st)
	}
}

func TestChildStop(t *testing.T) {
	for _, tc := range []struct {
		name        string
		script      string
		stopTimeout time.Duration
		minTook     time.Duration // SIGKILL only after StopTimeout
		maxTook     time.Duration
		wantLog     string
	}{
		{"SIGTERM stops it", "echo armed; exec sleep 100", 10 * time.Second, 0, 5 * time.Second, ""},
		{"SIGTERM reaches the program", `trap 'echo got TERM; kill $!; exit 0' TERM; echo armed; sleep 100 & wait`, 10 * time.Second, 0, 5 * time.Second, "got TERM"},
		{"SIGKILL after StopTimeout", `trap "" TERM; echo armed; exec sleep 100`, 500 * time.Millisecond, 500 * time.Millisecond, 5 * time.Second, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := shChild(t, tc.script)
			cfg.StopTimeout = tc.stopTimeout
			// Ready once the shell has installed its trap.
			cfg.Ready = func(context.Context) error {
				if b, _ := os.ReadFile(cfg.LogFile); !strings.Contains(string(b), "armed") {
					return errors.New("not armed yet")
				}
				return nil
			}
			c, cancel, done := runChild(t, cfg)
			waitReady(t, c, 5*time.Second)
			pid := c.State().PID
			t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })

			start := time.Now()
			cancel()
			if err := waitErr(t, done, 15*time.Second); err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
			took := time.Since(start)
			if took < tc.minTook || took > tc.maxTook {
				t.Errorf("stop took %s, want between %s and %s", took, tc.minTook, tc.maxTook)
			}
			if !processGone(pid) {
				t.Errorf("pid %d still exists after Run returned", pid)
			}
			if tc.wantLog != "" && !strings.Contains(readFile(t, cfg.LogFile), tc.wantLog) {
				t.Errorf("log %q does not contain %q", readFile(t, cfg.LogFile), tc.wantLog)
			}
			if st := c.State(); st.State != "stopped" {
				t.Errorf("state = %+v, want stopped", st)
			}
		})
	}
}

func TestChildCancelDuringBackoffIsStopped(t *testing.T) {
	cfg := shChild(t, "exit 1")
	cfg.MaxRestarts = 10
	c, cancel, done := runChild(t, cfg)
	waitState(t, c, "restarting", 5*time.Second)
	cancel()
	if err := waitErr(t, done, 5*time.Second); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if st := c.State(); st.State != "stopped" {
		t.Errorf("state after cancel during backoff = %+v, want stopped", st)
	}
}

func TestChildLogRotation(t *testing.T) {
	// 2.5 MiB of output with a 1 MiB cap: two rotated files and the current one, none above
	// the cap, nothing lost.
	const total = 5 << 19
	cfg := shChild(t, fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x; exec sleep 100", total))
	cfg.Log = LogRotation{MaxMiB: 1, Backups: 3, NoCompress: true}
	dir := filepath.Dir(cfg.LogFile)
	_, cancel, done := runChild(t, cfg)
	sizes := func() (map[string]int64, int64) {
		out, sum := map[string]int64{}, int64(0)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if fi, err := e.Info(); err == nil {
				out[e.Name()] = fi.Size()
				sum += fi.Size()
			}
		}
		return out, sum
	}
	var got map[string]int64
	var sum int64
	testbin.Eventually(t, 10*time.Second, "all output in the log files", func() bool { got, sum = sizes(); return sum >= total })
	cancel()
	if err := waitErr(t, done, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if sum != total || len(got) != 3 {
		t.Fatalf("log files %v (%d bytes), want 3 files with %d bytes", got, sum, total)
	}
	for name, size := range got {
		if size > 1<<20 {
			t.Errorf("%s has %d bytes, more than the 1 MiB cap", name, size)
		}
	}
	if got["child.log"] == 0 {
		t.Errorf("log files %v: the current one is empty", got)
	}
}

func TestOpenLogDefaults(t *testing.T) {
	w, err := OpenLog(filepath.Join(t.TempDir(), "logs", "x.log"), LogRotation{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	lj, ok := w.(*lumberjack.Logger)
	if !ok {
		t.Fatalf("OpenLog returned %T, want a rotating writer", w)
	}
	if lj.MaxSize != 50 || lj.MaxBackups != 3 || !lj.Compress {
		t.Errorf("defaults: MaxSize %d MiB, MaxBackups %d, Compress %v; want 50, 3, true", lj.MaxSize, lj.MaxBackups, lj.Compress)
	}
	fi, err := os.Stat(lj.Filename)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("log file %v, %v: want it created with mode 0640", fi, err)
	}
}

func TestChildEnvironmentAndDir(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "show-env")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"FOO=$FOO LEAK=${GLUEBOX_TEST_LEAK-unset} PATH=${PATH:+set} PWD=$(pwd -P)\"\nexec sleep 100\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GLUEBOX_TEST_LEAK", "leaked")
	logFile := filepath.Join(t.TempDir(), "env.log")
	c, cancel, done := runChild(t, ChildConfig{Path: script, Env: []string{"FOO=bar"}, LogFile: logFile})
	waitReady(t, c, 5*time.Second)
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "FOO=bar LEAK=unset PATH=set PWD=" + realDir + "\n"
	testbin.Eventually(t, 5*time.Second, "the child's environment in its log", func() bool { return readFile(t, logFile) == want })
	if got := readFile(t, logFile); got != want {
		t.Errorf("child saw %q, want %q", got, want)
	}
	cancel()
	if err := waitErr(t, done, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestChildCannotStart(t *testing.T) {
	cfg := ChildConfig{Name: "ghost", Path: filepath.Join(t.TempDir(), "missing"), MaxRestarts: 1}
	_, _, done := runChild(t, cfg)
	err := waitErr(t, done, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "cannot start "+cfg.Path) {
		t.Fatalf("want a start error naming the program, got %v", err)
	}
}

func TestHasKey(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want bool
	}{
		{nil, false},
		{[]string{"PATH=/bin"}, true},
		{[]string{"PATH="}, true},
		{[]string{"PATHX=/bin"}, false},
		{[]string{"MYPATH=/bin"}, false},
		{[]string{"PATH"}, false},
	} {
		if got := hasKey(tc.env, "PATH"); got != tc.want {
			t.Errorf("hasKey(%q, PATH) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// TestChildRunAgain: a Child whose Run returned can run again (the Group does that after a
// failure), and its readiness is the new Run's, not the old one's.
func TestChildRunAgain(t *testing.T) {
	dir := t.TempDir()
	up := filepath.Join(dir, "up")
	cfg := shChild(t, "touch "+up+"; exec sleep 100")
	cfg.Ready = func(context.Context) error {
		_, err := os.Stat(up)
		return err
	}
	c, cancel, done := runChild(t, cfg)
	waitReady(t, c, 5*time.Second)
	cancel()
	if err := waitErr(t, done, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(up); err != nil {
		t.Fatal(err)
	}
	ended, stop := context.WithCancel(context.Background())
	stop()
	if err := c.WaitReady(ended); err == nil {
		t.Fatal("WaitReady after Run returned = nil, want not ready")
	}
	_, cancel2, done2 := startChild(t, c)
	waitReady(t, c, 5*time.Second)
	if st := waitState(t, c, "running", 5*time.Second); st.PID == 0 {
		t.Errorf("state %+v after the second Run", st)
	}
	cancel2()
	if err := waitErr(t, done2, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
