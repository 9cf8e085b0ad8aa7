package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Defaults for the zero values of BuilderConfig.
const (
	DefaultMaxContextBytes = 512 << 20
	DefaultTimeout         = 30 * time.Minute
)

// BuilderConfig configures a Builder.
type BuilderConfig struct {
	// Bin is the bundled buildkitd program; buildkit-client next to it is the BuildKit
	// client. Required.
	Bin string
	// Addr is buildkitd's address, "unix:///path/buildkitd.sock" (Daemon.Addr()). Required.
	Addr string
	// MaxContextBytes is the largest build context (after .dockerignore) that is sent to
	// buildkitd. Zero means DefaultMaxContextBytes (512 MiB); negative means no limit.
	MaxContextBytes int64
	// Timeout bounds one build unless its Request sets another. Zero means DefaultTimeout (30m).
	Timeout time.Duration
	// SecureRegistry makes pushes require HTTPS with a verified certificate. False (the
	// default) lets the image exporter push over plain HTTP, as the built-in registry on
	// loopback needs (registry.insecure=true).
	SecureRegistry bool
	// HonorSyntax lets a `# syntax=` line in a Dockerfile switch to the frontend image it names,
	// which needs that image (usually from Docker Hub). False (the default) builds every
	// Dockerfile with the dockerfile frontend built into buildkitd, so builds work offline.
	HonorSyntax bool
}

// Validate reports the first setting that cannot work.
func (c BuilderConfig) Validate() error {
	if c.Bin == "" {
		return errors.New("build: BuilderConfig.Bin (the bundled buildkitd) is required")
	}
	if !strings.HasPrefix(c.Addr, "unix://") && !strings.HasPrefix(c.Addr, "tcp://") {
		return fmt.Errorf("build: buildkitd address %q must start with unix:// or tcp://", c.Addr)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("build: Timeout %s must not be negative", c.Timeout)
	}
	return nil
}

// Request is one Dockerfile build.
type Request struct {
	// ContextDir is the build context, an absolute directory. Required.
	ContextDir string `json:"contextDir"`
	// Dockerfile is the Dockerfile's path relative to ContextDir. Empty means "Dockerfile".
	Dockerfile string `json:"dockerfile,omitempty"`
	// BuildArgs are ARG values; Labels are added to the image config.
	BuildArgs map[string]string `json:"buildArgs,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Target is the stage to build; empty means the last one.
	Target string `json:"target,omitempty"`
	// Refs are the tags the image is pushed to, each with its registry
	// ("127.0.0.1:5000/app:<sha>", "127.0.0.1:5000/app:main"). At least one is required.
	Refs []string `json:"refs"`
	// NoCache rebuilds every step.
	NoCache bool `json:"noCache,omitempty"`
	// Timeout bounds this build; zero means the Builder's.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Result is what a successful build produced.
type Result struct {
	// Digest is the pushed image manifest's digest ("sha256:...").
	Digest string `json:"digest"`
	// Refs are the tags that now point at Digest.
	Refs []string `json:"refs"`
	// ContextBytes is the size of the context that was sent.
	ContextBytes int64 `json:"contextBytes"`
	// Duration is how long the build took.
	Duration time.Duration `json:"duration"`
}

// Errors a build can fail with, for errors.Is. Every failure's message also says what to fix.
var (
	// ErrNoDockerfile: the Dockerfile does not exist in the context.
	ErrNoDockerfile = errors.New("no Dockerfile")
	// ErrContextTooLarge: the context is over the size limit; nothing was sent.
	ErrContextTooLarge = errors.New("build context too large")
	// ErrTimeout: the build ran longer than its timeout and was cancelled.
	ErrTimeout = errors.New("build timed out")
	// ErrBadRequest: the request is unusable (bad refs, context outside a directory, ...).
	ErrBadRequest = errors.New("bad build request")
)

// DockerfileError is a Dockerfile that BuildKit refused before running any step: a syntax
// error, an unknown instruction or stage, a base image that cannot be resolved.
type DockerfileError struct {
	// File and Line locate the error; Text is the offending line. Line is 0 when unknown.
	File string
	Line int
	Text string
	// Msg is BuildKit's message.
	Msg string
}

func (e *DockerfileError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s, in %q", e.File, e.Line, e.Msg, strings.TrimSpace(e.Text))
}

// Builder builds Dockerfiles with buildkitd and pushes the images. It is safe for concurrent
// use; buildkitd runs concurrent builds and shares their cache.
type Builder struct {
	cfg BuilderConfig
}

// NewBuilder returns a Builder for cfg after filling in defaults.
func NewBuilder(cfg BuilderConfig) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxContextBytes == 0 {
		cfg.MaxContextBytes = DefaultMaxContextBytes
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Builder{cfg: cfg}, nil
}

// Build builds req and pushes the image to every ref, streaming the build's progress to log as
// plain text (as `docker build --progress=plain` prints it) and ending the log with the
// outcome. It returns the pushed digest; on failure the error is one of the Err* values or a
// *DockerfileError (use errors.Is/As), or ctx's error when ctx ended.
func (b *Builder) Build(ctx context.Context, req Request, log io.Writer) (Result, error) {
	started := time.Now()
	res, err := b.build(ctx, req, log)
	res.Duration = time.Since(started)
	if err != nil {
		fmt.Fprintf(log, "\nERROR: %v\n", err)
		return res, err
	}
	fmt.Fprintf(log, "\npushed %s as %s in %s\n", res.Digest, strings.Join(res.Refs, ", "), res.Duration.Round(100*time.Millisecond))
	return res, nil
}

func (b *Builder) build(ctx context.Context, req Request, log io.Writer) (Result, error) {
	creq, err := b.clientRequest(req)
	if err != nil {
		return Result{}, err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = b.cfg.Timeout
	}
	bctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()

	cres, err := runClient(bctx, b.cfg.Bin, creq, log)
	res := Result{Digest: cres.Digest, Refs: req.Refs, ContextBytes: cres.ContextBytes}
	switch {
	case ctx.Err() != nil:
		return Result{}, fmt.Errorf("build: cancelled: %w", context.Cause(ctx))
	case errors.Is(context.Cause(bctx), ErrTimeout):
		return Result{}, fmt.Errorf("build: %w after %s", ErrTimeout, timeout)
	case err != nil:
		return Result{}, err
	case cres.Error == "" && cres.Digest != "":
		return res, nil
	case cres.Error == "":
		return res, errors.New("build: buildkitd reported neither a digest nor an error")
	}
	msg := strings.TrimPrefix(cres.Error, "failed to solve: ")
	switch cres.Kind {
	case kindContextLarge:
		return res, fmt.Errorf("build: %w: %s", ErrContextTooLarge, msg)
	case kindRequest:
		return res, fmt.Errorf("build: %w: %s", ErrBadRequest, msg)
	case kindDockerfile:
		de := &DockerfileError{File: req.dockerfile(), Msg: msg}
		if len(cres.Sources) > 0 {
			de.Line, de.Text = cres.Sources[0].Line, cres.Sources[0].Text
			de.Msg = parseErrorPrefix.ReplaceAllString(msg, "")
		}
		return res, fmt.Errorf("build: %w", de)
	}
	if len(cres.Sources) > 0 && cres.Sources[0].Line > 0 {
		// A step failed: say which line of the Dockerfile it was.
		return res, fmt.Errorf("build: %s:%d: %s", req.dockerfile(), cres.Sources[0].Line, msg)
	}
	return res, fmt.Errorf("build: %s", msg)
}

// parseErrorPrefix is what BuildKit puts before a parse error; DockerfileError says the line.
var parseErrorPrefix = regexp.MustCompile(`^dockerfile parse error on line \d+: `)

func (r Request) dockerfile() string {
	if r.Dockerfile == "" {
		return "Dockerfile"
	}
	return r.Dockerfile
}

// clientRequest checks req and translates it. The checks here are the cheap ones; the
// context's size (which needs .dockerignore applied) is checked by the client before it sends
// anything.
func (b *Builder) clientRequest(req Request) (clientRequest, error) {
	if req.ContextDir == "" || !filepath.IsAbs(req.ContextDir) {
		return clientRequest{}, fmt.Errorf("build: %w: the context directory %q must be an absolute path", ErrBadRequest, req.ContextDir)
	}
	st, err := os.Stat(req.ContextDir)
	if err != nil {
		return clientRequest{}, fmt.Errorf("build: %w: cannot read the context directory: %w", ErrBadRequest, err)
	}
	if !st.IsDir() {
		return clientRequest{}, fmt.Errorf("build: %w: the context %s is not a directory", ErrBadRequest, req.ContextDir)
	}
	df := filepath.FromSlash(req.dockerfile())
	if !filepath.IsLocal(df) {
		return clientRequest{}, fmt.Errorf("build: %w: the Dockerfile path %q must stay inside the context", ErrBadRequest, req.Dockerfile)
	}
	dfPath := filepath.Join(req.ContextDir, df)
	if st, err := os.Stat(dfPath); errors.Is(err, fs.ErrNotExist) {
		return clientRequest{}, fmt.Errorf("build: %w: %s does not exist in the build context", ErrNoDockerfile, req.dockerfile())
	} else if err != nil {
		return clientRequest{}, fmt.Errorf("build: cannot read %s: %w", req.dockerfile(), err)
	} else if st.IsDir() {
		return clientRequest{}, fmt.Errorf("build: %w: %s is a directory", ErrNoDockerfile, req.dockerfile())
	}
	if len(req.Refs) == 0 {
		return clientRequest{}, fmt.Errorf("build: %w: no image reference to push to", ErrBadRequest)
	}
	for _, ref := range req.Refs {
		if err := ValidateRef(ref); err != nil {
			return clientRequest{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	for k := range req.BuildArgs {
		if k == "" || strings.ContainsAny(k, "= \t\n") {
			return clientRequest{}, fmt.Errorf("build: %w: invalid build argument name %q", ErrBadRequest, k)
		}
	}
	max := b.cfg.MaxContextBytes
	if max < 0 {
		max = 0
	}
	return clientRequest{
		Addr:             b.cfg.Addr,
		ContextDir:       req.ContextDir,
		DockerfileDir:    filepath.Dir(dfPath),
		DockerfileName:   filepath.Base(dfPath),
		BuildArgs:        req.BuildArgs,
		Labels:           req.Labels,
		Target:           req.Target,
		Refs:             req.Refs,
		Push:             true,
		InsecureRegistry: !b.cfg.SecureRegistry,
		NoCache:          req.NoCache,
		HonorSyntax:      b.cfg.HonorSyntax,
		MaxContextBytes:  max,
	}, nil
}
