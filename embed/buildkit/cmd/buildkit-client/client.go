// Command buildkit-client is gluebox's BuildKit client, bundled next to buildkitd and run by
// appliance/imagebuild as a child process (the BuildKit Go client lives in this module so its
// dependencies never move the versions Kubernetes pins in gluebox's own module):
//
//	buildkit-client workers --addr unix:///path/buildkitd.sock
//	    prints the daemon's workers as a JSON array; exit 0 only if the daemon answered.
//	buildkit-client build --result /path/result.json < request.json
//	    builds a Dockerfile with the dockerfile.v0 frontend and pushes the image; the build's
//	    progress goes to stdout as plain text (like `docker build --progress=plain`); the outcome
//	    is written to the result file as JSON, on failure too, and the exit status is 0 only on
//	    success. SIGTERM or SIGINT cancels the build.
//
// The request and result types are mirrored in appliance/imagebuild/client.go: change both together.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	bkclient "github.com/moby/buildkit/client"
	gatewaypb "github.com/moby/buildkit/frontend/gateway/pb"
	"github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/progress/progressui"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"
)

func main() { os.Exit(glueboxClientMain(os.Args[1:])) }

type glueboxBuildRequest struct {
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

type glueboxBuildResult struct {
	Digest       string          `json:"digest,omitempty"`
	ContextBytes int64           `json:"contextBytes"`
	Kind         string          `json:"kind,omitempty"`
	Error        string          `json:"error,omitempty"`
	Sources      []glueboxSource `json:"sources,omitempty"`
}

type glueboxSource struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Text string `json:"text,omitempty"`
}

// Kinds of failure in glueboxBuildResult.Kind.
const (
	kindRequest      = "request"           // the request itself is unusable
	kindContextLarge = "context-too-large" // checked before anything is sent
	kindDockerfile   = "dockerfile"        // the Dockerfile is wrong (syntax, unknown stage, base image)
	kindFailed       = "failed"            // a step failed or the daemon refused the build
	kindCanceled     = "canceled"          // SIGTERM/SIGINT
)

type glueboxError struct {
	kind string
	err  error
	srcs []*errdefs.Source
}

func (e *glueboxError) Error() string { return e.err.Error() }
func (e *glueboxError) Unwrap() error { return e.err }

func glueboxClientMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: buildkit-client workers|build [flags]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch args[0] {
	case "workers":
		fl := flag.NewFlagSet("workers", flag.ContinueOnError)
		addr := fl.String("addr", "", "buildkitd address (unix:///...)")
		if err := fl.Parse(args[1:]); err != nil {
			return 2
		}
		if err := glueboxWorkers(ctx, *addr, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	case "build":
		fl := flag.NewFlagSet("build", flag.ContinueOnError)
		resultFile := fl.String("result", "", "file that receives the result as JSON")
		if err := fl.Parse(args[1:]); err != nil || *resultFile == "" {
			fmt.Fprintln(os.Stderr, "usage: buildkitd gluebox-client build --result FILE < request.json")
			return 2
		}
		var req glueboxBuildRequest
		res := glueboxBuildResult{}
		dec := json.NewDecoder(os.Stdin)
		dec.DisallowUnknownFields()
		err := dec.Decode(&req)
		if err != nil {
			err = &glueboxError{kind: kindRequest, err: fmt.Errorf("cannot read build request: %w", err)}
		} else {
			res, err = glueboxBuild(ctx, req, os.Stdout)
		}
		if err != nil {
			res.Error = err.Error()
			res.Kind = kindFailed
			var ge *glueboxError
			if errors.As(err, &ge) {
				res.Kind = ge.kind
				res.Sources = ge.sources()
			}
			if ctx.Err() != nil {
				res.Kind = kindCanceled
			}
		}
		b, _ := json.Marshal(res)
		if werr := os.WriteFile(*resultFile, b, 0o600); werr != nil {
			fmt.Fprintln(os.Stderr, "cannot write result:", werr)
			return 1
		}
		if err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown gluebox-client command %q\n", args[0])
	return 2
}

type glueboxWorker struct {
	ID        string            `json:"id"`
	Platforms []string          `json:"platforms"`
	Labels    map[string]string `json:"labels,omitempty"`
}

func glueboxWorkers(ctx context.Context, addr string, out io.Writer) error {
	c, err := bkclient.New(ctx, addr)
	if err != nil {
		return fmt.Errorf("cannot connect to buildkitd at %s: %w", addr, err)
	}
	defer c.Close()
	ws, err := c.ListWorkers(ctx)
	if err != nil {
		return fmt.Errorf("cannot list workers of buildkitd at %s: %w", addr, err)
	}
	list := make([]glueboxWorker, 0, len(ws))
	for _, w := range ws {
		gw := glueboxWorker{ID: w.ID, Labels: w.Labels}
		for _, p := range w.Platforms {
			gw.Platforms = append(gw.Platforms, p.OS+"/"+p.Architecture)
		}
		list = append(list, gw)
	}
	return json.NewEncoder(out).Encode(list)
}

func glueboxBuild(ctx context.Context, req glueboxBuildRequest, progress io.Writer) (glueboxBuildResult, error) {
	var res glueboxBuildResult
	if req.Addr == "" || req.ContextDir == "" || req.DockerfileDir == "" || req.DockerfileName == "" || len(req.Refs) == 0 {
		return res, &glueboxError{kind: kindRequest, err: errors.New("build request needs addr, contextDir, dockerfileDir, dockerfileName and refs")}
	}
	if _, err := os.Stat(filepath.Join(req.DockerfileDir, req.DockerfileName)); err != nil {
		return res, &glueboxError{kind: kindDockerfile, err: fmt.Errorf("cannot read Dockerfile: %w", err)}
	}
	excludes, err := glueboxExcludes(req)
	if err != nil {
		return res, &glueboxError{kind: kindRequest, err: err}
	}
	size, err := glueboxContextSize(ctx, req.ContextDir, excludes, req.MaxContextBytes)
	res.ContextBytes = size
	if err != nil {
		return res, err
	}

	contextFS, err := fsutil.NewFS(req.ContextDir)
	if err != nil {
		return res, &glueboxError{kind: kindRequest, err: fmt.Errorf("cannot open build context: %w", err)}
	}
	dockerfileFS, err := fsutil.NewFS(req.DockerfileDir)
	if err != nil {
		return res, &glueboxError{kind: kindRequest, err: fmt.Errorf("cannot open Dockerfile directory: %w", err)}
	}

	attrs := map[string]string{"filename": req.DockerfileName}
	if req.Target != "" {
		attrs["target"] = req.Target
	}
	for k, v := range req.BuildArgs {
		attrs["build-arg:"+k] = v
	}
	for k, v := range req.Labels {
		attrs["label:"+k] = v
	}
	if req.NoCache {
		attrs["no-cache"] = ""
	}
	if !req.HonorSyntax {
		// The dockerfile frontend forwards to the image a `# syntax=` line names unless it is
		// told it already runs as that image: building offline must not depend on Docker Hub.
		attrs["cmdline"] = ""
	}
	exportAttrs := map[string]string{
		"name":  strings.Join(req.Refs, ","),
		"push":  fmt.Sprint(req.Push),
		"store": "false", // keep nothing outside BuildKit's own, garbage-collected cache
	}
	if req.InsecureRegistry {
		exportAttrs["registry.insecure"] = "true"
	}

	c, err := bkclient.New(ctx, req.Addr)
	if err != nil {
		return res, fmt.Errorf("cannot connect to buildkitd at %s: %w", req.Addr, err)
	}
	defer c.Close()

	ch := make(chan *bkclient.SolveStatus)
	display, err := progressui.NewDisplay(progress, progressui.PlainMode)
	if err != nil {
		return res, err
	}
	var resp *bkclient.SolveResponse
	eg, ectx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		resp, err = c.Solve(ectx, nil, bkclient.SolveOpt{
			Frontend:      "dockerfile.v0",
			FrontendAttrs: attrs,
			LocalMounts:   map[string]fsutil.FS{"context": contextFS, "dockerfile": dockerfileFS},
			Exports:       []bkclient.ExportEntry{{Type: bkclient.ExporterImage, Attrs: exportAttrs}},
		}, ch)
		return err
	})
	eg.Go(func() error {
		// Display errors only concern the log; the build's own error is what counts.
		_, _ = display.UpdateFrom(context.WithoutCancel(ectx), ch)
		return nil
	})
	if err := eg.Wait(); err != nil {
		return res, glueboxSolveError(err, progress)
	}
	res.Digest = resp.ExporterResponse["containerimage.digest"]
	if res.Digest == "" {
		return res, &glueboxError{kind: kindFailed, err: errors.New("buildkitd reported no image digest")}
	}
	return res, nil
}

// glueboxSolveError classifies a failed solve and prints the Dockerfile lines it points at,
// the way buildx does, to the build log.
func glueboxSolveError(err error, log io.Writer) error {
	kind := kindFailed
	var ve *errdefs.VertexError
	var ee *gatewaypb.ExitError
	srcs := errdefs.Sources(err)
	if len(srcs) > 0 && !errors.As(err, &ve) && !errors.As(err, &ee) {
		kind = kindDockerfile // the frontend refused it before any step ran
	}
	if len(srcs) > 0 {
		fmt.Fprintln(log)
		for _, s := range srcs {
			_ = s.Print(log)
		}
	}
	return &glueboxError{kind: kind, err: err, srcs: srcs}
}

// sources returns where in which file the error points, with the line's text.
func (e *glueboxError) sources() []glueboxSource {
	var out []glueboxSource
	for _, s := range e.srcs {
		if s.Info == nil || len(s.Ranges) == 0 || s.Ranges[0].Start == nil {
			continue
		}
		line := int(s.Ranges[0].Start.Line)
		gs := glueboxSource{File: s.Info.Filename, Line: line}
		lines := strings.Split(string(s.Info.Data), "\n")
		if line >= 1 && line <= len(lines) {
			gs.Text = lines[line-1]
		}
		out = append(out, gs)
	}
	return out
}

// glueboxExcludes reads the ignore file that the dockerfile frontend will apply:
// <Dockerfile>.dockerignore next to the Dockerfile if present, else .dockerignore in the context.
func glueboxExcludes(req glueboxBuildRequest) ([]string, error) {
	for _, p := range []string{
		filepath.Join(req.DockerfileDir, req.DockerfileName+".dockerignore"),
		filepath.Join(req.ContextDir, ".dockerignore"),
	} {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cannot read %s: %w", p, err)
		}
		defer f.Close()
		pats, err := ignorefile.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("cannot parse %s: %w", p, err)
		}
		return pats, nil
	}
	return nil, nil
}

var errGlueboxTooLarge = errors.New("too large")

// glueboxContextSize adds up the bytes the build context would send (after the ignore file),
// stopping as soon as max (if positive) is passed.
func glueboxContextSize(ctx context.Context, dir string, excludes []string, max int64) (int64, error) {
	base, err := fsutil.NewFS(dir)
	if err != nil {
		return 0, &glueboxError{kind: kindRequest, err: fmt.Errorf("cannot open build context: %w", err)}
	}
	filtered, err := fsutil.NewFilterFS(base, &fsutil.FilterOpt{ExcludePatterns: excludes})
	if err != nil {
		return 0, &glueboxError{kind: kindRequest, err: fmt.Errorf("bad ignore patterns: %w", err)}
	}
	var total int64
	var biggest []sizedPath
	err = filtered.Walk(ctx, "", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += fi.Size()
		biggest = append(biggest, sizedPath{p, fi.Size()})
		if max > 0 && total > max {
			return errGlueboxTooLarge
		}
		return nil
	})
	if errors.Is(err, errGlueboxTooLarge) {
		sort.Slice(biggest, func(i, j int) bool { return biggest[i].size > biggest[j].size })
		var names []string
		for i := 0; i < len(biggest) && i < 3; i++ {
			names = append(names, fmt.Sprintf("%s (%d bytes)", biggest[i].path, biggest[i].size))
		}
		return total, &glueboxError{kind: kindContextLarge, err: fmt.Errorf("build context is over the limit of %d bytes (stopped counting at %d bytes; largest files seen: %s); exclude files with a .dockerignore",
			max, total, strings.Join(names, ", "))}
	}
	if err != nil {
		return total, &glueboxError{kind: kindRequest, err: fmt.Errorf("cannot read build context: %w", err)}
	}
	return total, nil
}

type sizedPath struct {
	path string
	size int64
}
