// Package supervise runs the parts of a gluebox server. Group starts components (see
// Component) in order, waits for each to be ready, and stops them in reverse; it refuses two
// components of one name. A component is critical when it says so (see Critical): the
// datastore, the control plane, containerd and the kubelet, whose failure Group reports on
// Failed so that the process ends. Every other component is restarted with backoff when it
// fails (see Backoff) and shows as degraded in the meantime; one that does not become ready
// at boot does not stop the boot. Child runs one helper program (containerd, coredns, ...) as
// a supervised child process with restarts, its output in a size-capped log (see LogRotation)
// and, when its ChildConfig has Limits, in a cgroup of its own with kernel-enforced memory and
// CPU limits (cgroup v2 or v1; see Limits and CheckCgroups). Readiness helps components whose
// Run is called again. Components of gluebox import it; it imports nothing of gluebox.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// ChildConfig describes one helper program run by a Child.
type ChildConfig struct {
	// Name names the child in logs and status, e.g. "containerd".
	Name string
	// Path is the program to run; Args its arguments (without the program name).
	Path string
	Args []string
	// Env is the child's whole environment: nothing of gluebox's environment leaks into it
	// except PATH when Env sets no PATH.
	Env []string
	// Dir is the working directory; empty means the program's directory.
	Dir string
	// LogFile receives the child's stdout and stderr, rotated as Log says (by default at
	// 50 MiB, 3 compressed backups kept); empty discards them.
	LogFile string
	Log     LogRotation
	// Ready reports whether the child is serving, e.g. by dialing its socket. Nil means
	// "ready once started".
	Ready func(ctx context.Context) error
	// ReadyTimeout bounds how long a start may take to become ready (default 60s).
	ReadyTimeout time.Duration
	// StopTimeout is how long the child gets between SIGTERM and SIGKILL (default 10s).
	StopTimeout time.Duration
	// MaxRestarts is how many restarts in a row a child gets before Run gives up; a child that
	// ran for longer than a minute starts the count again. Zero means 5.
	MaxRestarts int
	// Limits are kernel-enforced memory and CPU limits, applied through a cgroup of the
	// child's own (see Limits); the zero value means none. Limits that cannot be applied make
	// Run fail at once, saying why: a child meant to be bounded never runs unbounded.
	Limits Limits
}

// Child runs one helper program until its context ends, restarting it with backoff when it
// dies. Use NewChild, then Run; Ready is closed the first time the program is ready in that
// Run. Run may be called again once it returned (the Group does, after a failure).
type Child struct {
	cfg   ChildConfig
	log   *slog.Logger
	ready Readiness
	mu    sync.Mutex
	state ChildState
	// detect finds the cgroup hierarchies (tests point it elsewhere).
	detect func() (cgroupFS, error)
	// cg is the child's cgroup while Run runs with Limits; written by Run under mu.
	cg *cgroup
	// noCloneInto is set once clone3 into a cgroup failed for want of kernel support.
	noCloneInto bool
}

// ChildState is what `gluebox status` shows about a child.
type ChildState struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // starting, running, restarting, stopped, failed
	PID       int       `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
	// Cgroup is the child's own cgroup (Limits.CgroupParent/Name), empty without one.
	Cgroup string `json:"cgroup,omitempty"`
	// MemoryLimit (bytes) and CPULimit (cores) are the limits the kernel enforces; zero: none.
	MemoryLimit int64   `json:"memoryLimit,omitempty"`
	CPULimit    float64 `json:"cpuLimit,omitempty"`
	// MemoryUsage is the memory the child's cgroup is charged for now, page cache included
	// (what MemoryLimit is compared with); zero when it has no cgroup or is not running.
	MemoryUsage int64 `json:"memoryUsage,omitempty"`
	// OOMKills counts the processes the kernel killed in the child's cgroup for its memory
	// limit since Run started.
	OOMKills int `json:"oomKills,omitempty"`
}

// NewChild returns a Child for cfg after filling in defaults.
func NewChild(cfg ChildConfig, log *slog.Logger) *Child {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.MaxRestarts == 0 {
		cfg.MaxRestarts = 5
	}
	return &Child{cfg: cfg, log: log.With("child", cfg.Name), detect: detectCgroupFS,
		state: ChildState{Name: cfg.Name, State: "starting", Since: time.Now()}}
}

// Ready is closed once the program has been ready at least once in the current Run; when Run
// has returned, it is a new channel, closed once the next Run's program is ready.
func (c *Child) Ready() <-chan struct{} { return c.ready.C() }

// Name is the child's name, so that a Child is a Component by itself.
func (c *Child) Name() string { return c.cfg.Name }

// WaitReady returns once the program is ready in the current Run, or ctx's error.
func (c *Child) WaitReady(ctx context.Context) error { return c.ready.Wait(ctx) }

var _ Component = (*Child)(nil)

// State returns a snapshot of the child's state; memory use and OOM kills are read from its
// cgroup now.
func (c *Child) State() ChildState {
	c.mu.Lock()
	st, cg := c.state, c.cg
	c.mu.Unlock()
	if cg != nil {
		if u, err := cg.usage(); err == nil {
			st.MemoryUsage = u
		}
		if n, err := cg.oomKills(); err == nil {
			st.OOMKills = n - cg.oomBase
		}
	}
	return st
}

func (c *Child) setState(f func(*ChildState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.state)
}

// Run starts the program and keeps it running until ctx ends, then stops it (SIGTERM, then
// SIGKILL after StopTimeout) and returns nil. It returns an error when the program cannot be
// started or keeps dying, and at once when its Limits cannot be applied. With Limits, the
// child's cgroup is created first and removed when Run returns.
func (c *Child) Run(ctx context.Context) error {
	defer c.ready.Clear()
	c.setState(func(s *ChildState) { s.State = "starting"; s.Since = time.Now() })
	if err := c.setupCgroup(); err != nil {
		c.setState(func(s *ChildState) { s.State = "failed"; s.PID = 0; s.LastError = err.Error(); s.Since = time.Now() })
		return err
	}
	defer c.removeCgroup()
	logw, err := OpenLog(c.cfg.LogFile, c.cfg.Log)
	if err != nil {
		c.setState(func(s *ChildState) { s.State = "failed"; s.PID = 0; s.LastError = err.Error(); s.Since = time.Now() })
		return err
	}
	defer logw.Close()
	failures := 0
	backoff := 500 * time.Millisecond
	for {
		started := time.Now()
		oomBefore := c.oomKills()
		err := c.runOnce(ctx, logw)
		if ctx.Err() != nil {
			c.setState(func(s *ChildState) { s.State = "stopped"; s.PID = 0; s.Since = time.Now() })
			return nil
		}
		if time.Since(started) > time.Minute {
			failures = 0
			backoff = 500 * time.Millisecond
		}
		failures++
		msg := "exited"
		if err != nil {
			msg = err.Error()
		}
		ooms := c.oomKills()
		oom := ooms > oomBefore
		if oom {
			msg = c.oomText() + " (" + msg + ")"
		}
		c.setState(func(s *ChildState) { s.OOMKills = ooms })
		if failures > c.cfg.MaxRestarts {
			c.setState(func(s *ChildState) { s.State = "failed"; s.PID = 0; s.LastError = msg; s.Since = time.Now() })
			return fmt.Errorf("%s keeps failing (%d times in a row), last: %s; see %s", c.cfg.Name, failures, msg, c.cfg.LogFile)
		}
		if oom {
			c.log.Warn(c.oomText(), "oomKills", ooms, "err", err, "restartIn", backoff, "log", c.cfg.LogFile)
		} else {
			c.log.Warn("child died, restarting", "err", msg, "in", backoff, "log", c.cfg.LogFile)
		}
		c.setState(func(s *ChildState) {
			s.State = "restarting"
			s.PID = 0
			s.Restarts++
			s.LastError = msg
			s.Since = time.Now()
		})
		select {
		case <-ctx.Done():
			c.setState(func(s *ChildState) { s.State = "stopped"; s.Since = time.Now() })
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// runOnce starts the program once and returns when it has exited, or has been stopped because
// ctx ended. Its output goes through a pipe of its own to logw: the program gets a real file
// (exec then waits for no copying, which programs leaving children behind would hold up), and
// the copying ends when the last process holding the pipe has exited.
func (c *Child) runOnce(ctx context.Context, logw io.Writer) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("cannot create the output pipe of %s: %w", c.cfg.Name, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer pr.Close()
		_, _ = io.Copy(logw, pr)
	}()
	defer func() {
		pw.Close() // the program has its own copy
		// Once the program has exited its last words are copied, unless something it left
		// running still holds the pipe: then the copying goes on without holding Run up.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
	}()
	cmd := c.command(pw)
	cloneInto := c.cg != nil && c.cg.v2 && !c.noCloneInto
	if cloneInto {
		fd, err := c.cg.openDir()
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	err = cmd.Start()
	if err != nil && cloneInto && (errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.E2BIG)) {
		// clone3 into a cgroup needs Linux 5.7; older kernels get the v1 way: start, then move.
		c.log.Info("kernel cannot start a process inside a cgroup; moving it there after the start", "err", err)
		c.noCloneInto, cloneInto = true, false
		cmd = c.command(pw)
		err = cmd.Start()
	}
	if err != nil {
		return fmt.Errorf("cannot start %s: %w", c.cfg.Path, err)
	}
	pid := cmd.Process.Pid
	if c.cg != nil && !cloneInto {
		// The program has run for a moment in gluebox's cgroup; see Limits.
		if err := c.cg.enter(pid); err != nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = cmd.Wait()
			return fmt.Errorf("%s was killed: it cannot be moved into its cgroup and must not run without its limits: %w", c.cfg.Name, err)
		}
	}
	c.setState(func(s *ChildState) { s.State = "starting"; s.PID = pid; s.Since = time.Now() })
	c.log.Info("started", "pid", pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	readyCtx, cancelReady := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	readyErr := make(chan error, 1)
	go func() { readyErr <- c.waitReady(readyCtx) }()
	defer cancelReady()

	for {
		select {
		case err := <-readyErr:
			readyErr = nil
			if err != nil {
				if ctx.Err() != nil {
					continue
				}
				c.log.Error("not ready in time, killing it", "err", err)
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				continue
			}
			c.setState(func(s *ChildState) { s.State = "running"; s.LastError = "" })
			c.ready.Set()
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("%s exited: %w", c.cfg.Name, err)
			}
			return errors.New(c.cfg.Name + " exited with status 0")
		case <-ctx.Done():
			c.stop(pid, exited)
			return nil
		}
	}
}

// command returns the program's command, not started, writing its output to logw.
func (c *Child) command(logw io.Writer) *exec.Cmd {
	cmd := exec.Command(c.cfg.Path, c.cfg.Args...)
	cmd.Env = c.cfg.Env
	if !hasKey(cmd.Env, "PATH") {
		cmd.Env = append(cmd.Env, "PATH="+os.Getenv("PATH"))
	}
	cmd.Dir = c.cfg.Dir
	if cmd.Dir == "" {
		cmd.Dir = filepath.Dir(c.cfg.Path)
	}
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// setupCgroup creates the child's cgroup with its limits, if it has any.
func (c *Child) setupCgroup() error {
	l := c.cfg.Limits
	if err := l.Validate(); err != nil {
		return fmt.Errorf("%s: %w", c.cfg.Name, err)
	}
	if l.CgroupParent == "" {
		return nil
	}
	fsys, err := c.detect()
	if err != nil {
		return limitsError(c.cfg.Name, err)
	}
	cg, err := newCgroup(fsys, l, c.cfg.Name)
	if err != nil {
		return limitsError(c.cfg.Name, err)
	}
	if err := cg.create(); err != nil {
		_ = cg.remove()
		return limitsError(c.cfg.Name, err)
	}
	c.mu.Lock()
	c.cg = cg
	c.state.Cgroup = cg.path
	c.state.MemoryLimit = max(l.MemoryBytes, 0)
	c.state.CPULimit = max(l.CPU, 0)
	c.state.OOMKills = 0
	c.mu.Unlock()
	c.log.Info("cgroup ready", "cgroup", cg.path, "v2", cg.v2, "memoryLimit", c.state.MemoryLimit, "cpuLimit", c.state.CPULimit)
	return nil
}

// removeCgroup removes the child's cgroup once it has exited for good.
func (c *Child) removeCgroup() {
	if c.cg == nil {
		return
	}
	n := c.oomKills()
	logCgroupRemoval(c.cg, c.log)
	c.mu.Lock()
	c.cg = nil
	c.state.OOMKills = n
	c.state.MemoryUsage = 0
	c.mu.Unlock()
}

// oomKills returns the OOM kills in the child's cgroup since Run started (the last known count
// when it cannot be read).
func (c *Child) oomKills() int {
	if c.cg != nil {
		if n, err := c.cg.oomKills(); err == nil {
			return n - c.cg.oomBase
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.OOMKills
}

// oomText says what killed the child after an OOM kill in its cgroup, and what to do.
func (c *Child) oomText() string {
	if c.cfg.Limits.MemoryBytes > 0 {
		flag := c.cfg.Limits.MemoryFlag
		if flag == "" {
			flag = "Limits.MemoryBytes"
		}
		return "killed by its memory limit (" + mib(c.cfg.Limits.MemoryBytes) + "); raise " + flag
	}
	return "killed by the kernel's OOM killer (no memory limit of its own; the host or a parent cgroup ran out)"
}

// mib formats bytes as mebibytes, e.g. "512 MiB".
func mib(b int64) string {
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', -1, 64) + " MiB"
}

func (c *Child) waitReady(ctx context.Context) error {
	if c.cfg.Ready == nil {
		return nil
	}
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		last = c.cfg.Ready(ctx)
		return last == nil, nil
	})
	if err != nil {
		if last == nil {
			last = err
		}
		return fmt.Errorf("%s not ready: %w", c.cfg.Name, last)
	}
	return nil
}

// stop sends SIGTERM to the child alone (not its process group: containerd's shims must live on)
// and SIGKILL after StopTimeout.
func (c *Child) stop(pid int, exited <-chan error) {
	c.log.Info("stopping", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(c.cfg.StopTimeout):
		c.log.Warn("did not stop in time, killing it", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-exited
	}
}

func hasKey(env []string, key string) bool {
	for _, kv := range env {
		if len(kv) > len(key) && kv[:len(key)+1] == key+"=" {
			return true
		}
	}
	return false
}
