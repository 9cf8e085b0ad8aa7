// Package supervise runs the parts of a gluebox server: Group starts components in order, waits
// for each to be ready, and stops them in reverse; Child runs one helper program (containerd,
// coredns, ...) as a supervised child process with restarts. Components of gluebox import it;
// it imports nothing of gluebox but paths-free standard library code.
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
	"sync"
	"syscall"
	"time"
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
	// LogFile receives the child's stdout and stderr; it is rotated to LogFile+".1" once it
	// passes MaxLogBytes (default 50 MiB) at a (re)start.
	LogFile     string
	MaxLogBytes int64
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
}

// Child runs one helper program until its context ends, restarting it with backoff when it
// dies. Use NewChild, then Run; Ready is closed the first time the program is ready.
type Child struct {
	cfg     ChildConfig
	log     *slog.Logger
	ready   chan struct{}
	once    sync.Once
	mu      sync.Mutex
	state   ChildState
	lastPID int
}

// ChildState is what `gluebox status` shows about a child.
type ChildState struct {
	Name      string    `json:"name"`
	State     string    `json:"state"` // starting, running, restarting, stopped, failed
	PID       int       `json:"pid,omitempty"`
	Restarts  int       `json:"restarts"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
}

// NewChild returns a Child for cfg after filling in defaults.
func NewChild(cfg ChildConfig, log *slog.Logger) *Child {
	if cfg.MaxLogBytes == 0 {
		cfg.MaxLogBytes = 50 << 20
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.MaxRestarts == 0 {
		cfg.MaxRestarts = 5
	}
	return &Child{cfg: cfg, log: log.With("child", cfg.Name), ready: make(chan struct{}), state: ChildState{Name: cfg.Name, State: "starting", Since: time.Now()}}
}

// Ready is closed once the program has been ready at least once.
func (c *Child) Ready() <-chan struct{} { return c.ready }

// State returns a snapshot of the child's state.
func (c *Child) State() ChildState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Child) setState(f func(*ChildState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(&c.state)
}

// Run starts the program and keeps it running until ctx ends, then stops it (SIGTERM, then
// SIGKILL after StopTimeout) and returns nil. It returns an error when the program cannot be
// started or keeps dying.
func (c *Child) Run(ctx context.Context) error {
	failures := 0
	backoff := 500 * time.Millisecond
	for {
		started := time.Now()
		err := c.runOnce(ctx)
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
		if failures > c.cfg.MaxRestarts {
			c.setState(func(s *ChildState) { s.State = "failed"; s.PID = 0; s.LastError = msg; s.Since = time.Now() })
			return fmt.Errorf("%s keeps failing (%d times in a row), last: %s; see %s", c.cfg.Name, failures, msg, c.cfg.LogFile)
		}
		c.log.Warn("child died, restarting", "err", msg, "in", backoff, "log", c.cfg.LogFile)
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

func (c *Child) runOnce(ctx context.Context) error {
	logw, err := openLog(c.cfg.LogFile, c.cfg.MaxLogBytes)
	if err != nil {
		return err
	}
	defer logw.Close()
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
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", c.cfg.Path, err)
	}
	pid := cmd.Process.Pid
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
			c.once.Do(func() { close(c.ready) })
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

func (c *Child) waitReady(ctx context.Context) error {
	if c.cfg.Ready == nil {
		return nil
	}
	var last error
	for {
		if last = c.cfg.Ready(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", c.cfg.Name, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
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

func openLog(path string, maxBytes int64) (io.WriteCloser, error) {
	if path == "" {
		return nopCloser{io.Discard}, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("cannot create log dir: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Size() > maxBytes {
		_ = os.Rename(path, path+".1")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("cannot open log %s: %w", path, err)
	}
	return f, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
