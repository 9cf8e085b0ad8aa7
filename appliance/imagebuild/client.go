package imagebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clientBin is gluebox's BuildKit client (embed/buildkit/cmd/buildkit-client), bundled next to
// the buildkitd program bin.
func clientBin(bin string) string { return filepath.Join(filepath.Dir(bin), "buildkit-client") }

// clientRequest and clientResult mirror glueboxBuildRequest and glueboxBuildResult in
// embed/buildkit/cmd/buildkit-client/client.go: change both together.
type clientRequest struct {
	Addr             string            `json:"addr"`
	ContextDir       string            `json:"contextDir"`
	DockerfileDir    string            `json:"dockerfileDir"`
	DockerfileName   string            `json:"dockerfileName"`
	BuildArgs        map[string]string `json:"buildArgs,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	Target           string            `json:"target,omitempty"`
	Refs             []string          `json:"refs"`
	Push             bool              `json:"push"`
	InsecureRegistry bool              `json:"insecureRegistry"`
	NoCache          bool              `json:"noCache,omitempty"`
	HonorSyntax      bool              `json:"honorSyntax,omitempty"`
	MaxContextBytes  int64             `json:"maxContextBytes,omitempty"`
}

type clientResult struct {
	Digest       string         `json:"digest,omitempty"`
	ContextBytes int64          `json:"contextBytes"`
	Kind         string         `json:"kind,omitempty"`
	Error        string         `json:"error,omitempty"`
	Sources      []clientSource `json:"sources,omitempty"`
}

type clientSource struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Text string `json:"text,omitempty"`
}

// Failure kinds reported by the client.
const (
	kindRequest      = "request"
	kindContextLarge = "context-too-large"
	kindDockerfile   = "dockerfile"
	kindFailed       = "failed"
	kindCanceled     = "canceled"
)

// Worker is one BuildKit worker as buildkitd lists it.
type Worker struct {
	ID        string            `json:"id"`
	Platforms []string          `json:"platforms"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// ListWorkers asks the buildkitd at addr (unix:///path) for its workers, using the client in
// the buildkitd program bin.
func ListWorkers(ctx context.Context, bin, addr string) ([]Worker, error) {
	cmd := exec.CommandContext(ctx, clientBin(bin), "workers", "--addr", addr)
	cmd.Env = clientEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("build: list workers: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var ws []Worker
	if err := json.Unmarshal(out, &ws); err != nil {
		return nil, fmt.Errorf("build: list workers: cannot parse %q: %w", out, err)
	}
	return ws, nil
}

// clientEnv is the client's whole environment: it needs none of gluebox's (no Docker
// credentials, no proxies it did not ask for).
func clientEnv() []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/nonexistent"}
}

// stopGrace is how long the client gets after SIGTERM to cancel the build with buildkitd
// before it is killed.
const stopGrace = 10 * time.Second

// runClient runs one build through the client: progress goes to progress, the outcome comes
// back as a clientResult. err is only set when the client could not run or report at all.
func runClient(ctx context.Context, bin string, req clientRequest, progress io.Writer) (clientResult, error) {
	var res clientResult
	body, err := json.Marshal(req)
	if err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp("", "gluebox-build-")
	if err != nil {
		return res, fmt.Errorf("build: cannot create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	resultFile := filepath.Join(tmp, "result.json")

	cmd := exec.CommandContext(ctx, clientBin(bin), "build", "--result", resultFile)
	cmd.Env = clientEnv()
	cmd.Stdin = bytes.NewReader(body)
	stderr := &tailBuffer{max: 8 << 10}
	out := &lockedWriter{w: progress} // stdout and stderr are copied by two goroutines
	cmd.Stdout = out
	cmd.Stderr = io.MultiWriter(out, stderr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// On cancel the client gets SIGTERM so it can cancel the build in buildkitd, then SIGKILL.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	runErr := cmd.Run()

	b, err := os.ReadFile(resultFile)
	if err != nil {
		if runErr == nil {
			runErr = errors.New("no result written")
		}
		return res, fmt.Errorf("build: client %s failed: %w: %s", bin, runErr, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return res, fmt.Errorf("build: cannot parse client result %q: %w", b, err)
	}
	if runErr != nil && res.Error == "" {
		res.Kind, res.Error = kindFailed, runErr.Error()
	}
	return res, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
