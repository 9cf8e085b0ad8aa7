package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gluebox/gluebox/appliance/api"
	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/gitops/builds"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// buildService is the image builder as the server runs it: buildkitd (started on the first
// build), the build queue and the follower of the app repositories.
type buildService struct {
	daemon   *lazyDaemon
	log      *slog.Logger
	queue    *imagebuild.Queue
	follower *builds.Follower
	// logs receives every finished build's log (nil without observability).
	logs func() *logs.Client

	mu       sync.Mutex
	finished map[[2]string]float64 // (app, status) → builds finished since start
}

// newBuilds prepares the builder. Its components run after containerd and the registry.
func (s *Server) newBuilds(bdl bundle.Dir, p *platform) (*buildService, []supervise.Component, error) {
	l := s.layout
	d, err := imagebuild.NewDaemon(imagebuild.Config{
		Bin:              bdl.Bin("buildkitd"),
		Dir:              l.Join("buildkit"),
		LogFile:          filepath.Join(l.LogDir(), "buildkitd.log"),
		ContainerdSocket: l.ContainerdSocket(),
		Runc:             bdl.Bin("runc"),
		Registry:         s.cfg.RegistryAddr,
	}, s.log)
	if err != nil {
		return nil, nil, err
	}
	builder, err := imagebuild.NewBuilder(imagebuild.BuilderConfig{Bin: d.Bin(), Addr: d.Addr(), Timeout: s.cfg.BuildTimeout})
	if err != nil {
		return nil, nil, err
	}
	bs := &buildService{daemon: &lazyDaemon{d: d, need: make(chan struct{})}, log: s.log.With("component", "builds"), finished: map[[2]string]float64{}}
	run := func(ctx context.Context, req imagebuild.Request, w io.Writer) (imagebuild.Result, error) {
		if err := bs.daemon.ensure(ctx, w); err != nil {
			return imagebuild.Result{}, err
		}
		return builder.Build(ctx, req, w)
	}
	q, err := imagebuild.NewQueue(imagebuild.QueueConfig{Dir: filepath.Join(l.StateDir(), "builds"), Concurrency: s.cfg.BuildConcurrency},
		run, s.log, imagebuild.WithOnFinish(bs.onFinish))
	if err != nil {
		return nil, nil, err
	}
	bs.queue = q
	bs.follower, err = builds.New(builds.Config{
		Dir:             filepath.Join(l.GitOpsDir(), "builds"),
		Registry:        s.cfg.RegistryAddr,
		PollInterval:    s.cfg.PollInterval,
		PreviewBranches: s.cfg.PreviewBranches,
		Domain:          s.cfg.Domain,
		PreviewTTL:      s.cfg.PreviewTTL,
	}, builds.Deps{
		Queue:   q,
		Secrets: p.sec.Store(),
		OnChange: func(apps ...string) {
			if p.gitops != nil {
				p.gitops.TriggerApps(apps...)
			}
		},
		Logger: s.log,
	})
	if err != nil {
		return nil, nil, err
	}
	bs.logs = func() *logs.Client {
		if p.observe == nil || p.observe.logs == nil {
			return nil
		}
		return p.observe.logs.Client()
	}
	p.builds = bs
	return bs, []supervise.Component{bs.daemon, q, bs.follower}, nil
}

// onFinish counts the build, tells the follower and ships its log to the logs store.
func (b *buildService) onFinish(r imagebuild.Record) {
	b.mu.Lock()
	b.finished[[2]string{r.App, string(r.Status)}]++
	b.mu.Unlock()
	if b.follower != nil {
		b.follower.BuildFinished(r)
	}
	if c := b.logs(); c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := b.shipLog(ctx, c, r); err != nil {
			b.log.Warn("build log not stored in the logs store", "build", r.ID, "err", err)
		}
	}
}

// shipLog stores a finished build's log lines in the logs store, one stream per app, with
// the build's id, branch, commit and status on every line.
func (b *buildService) shipLog(ctx context.Context, c *logs.Client, r imagebuild.Record) error {
	f, err := os.Open(b.queue.LogPath(r.ID))
	if err != nil {
		return err
	}
	defer f.Close()
	fields := map[string]string{"source": "build", "app": r.App, "build": r.ID, "branch": r.Branch, "commit": r.Commit, "status": string(r.Status)}
	var batch []logs.Line
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	t := r.Started
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		t = t.Add(time.Microsecond) // keep the log's order
		batch = append(batch, logs.Line{Time: t, Msg: sc.Text(), Fields: fields})
		if len(batch) == 1000 {
			if err := c.Ingest(ctx, batch, "source", "app"); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return c.Ingest(ctx, batch, "source", "app")
}

var (
	descBuilds        = prometheus.NewDesc("gluebox_builds_total", "Builds that ended since gluebox started, by final status.", []string{"app", "status"}, nil)
	descBuildFailures = prometheus.NewDesc("gluebox_build_failures_total", "Builds that failed since gluebox started.", []string{"app"}, nil)
	descBuildsQueued  = prometheus.NewDesc("gluebox_builds_in_progress", "Builds queued or running.", []string{"status"}, nil)
)

func (b *buildService) describe(ch chan<- *prometheus.Desc) {
	ch <- descBuilds
	ch <- descBuildFailures
	ch <- descBuildsQueued
}

func (b *buildService) collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	failures := map[string]float64{}
	for k, v := range b.finished {
		ch <- prometheus.MustNewConstMetric(descBuilds, prometheus.CounterValue, v, k[0], k[1])
		if k[1] == string(imagebuild.StatusFailed) {
			failures[k[0]] += v
		}
	}
	b.mu.Unlock()
	for _, a := range b.follower.Apps() {
		if _, ok := failures[a.Name]; !ok {
			failures[a.Name] = 0 // so increase() sees the first failure
		}
	}
	for app, v := range failures {
		ch <- prometheus.MustNewConstMetric(descBuildFailures, prometheus.CounterValue, v, app)
	}
	var queued, running float64
	for _, r := range b.queue.List(imagebuild.Filter{}) {
		switch r.Status {
		case imagebuild.StatusQueued:
			queued++
		case imagebuild.StatusRunning:
			running++
		}
	}
	ch <- prometheus.MustNewConstMetric(descBuildsQueued, prometheus.GaugeValue, queued, "queued")
	ch <- prometheus.MustNewConstMetric(descBuildsQueued, prometheus.GaugeValue, running, "running")
}

// register serves the builds API:
//
//	GET  /v1/builds?app=&branch=&status=&limit=   records, newest first
//	GET  /v1/builds/{id}                          one record
//	GET  /v1/builds/{id}/logs?follow=true          its log, followed until it ends
//	POST /v1/builds/{id}/cancel
//	GET  /v1/previews                             open previews
//	GET  /v1/build-sources                         what the last poll saw of each app repository
func (b *buildService) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/builds", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := imagebuild.Filter{App: q.Get("app"), Branch: q.Get("branch"), Status: imagebuild.Status(q.Get("status"))}
		switch f.Status {
		case "", imagebuild.StatusQueued, imagebuild.StatusRunning, imagebuild.StatusSucceeded, imagebuild.StatusFailed, imagebuild.StatusCancelled:
		default:
			api.WriteError(w, api.Errorf(http.StatusBadRequest, "status %q is not one of queued, running, succeeded, failed, cancelled", f.Status))
			return
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "limit %q is not a non-negative number", v))
				return
			}
			f.Limit = n
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"builds": nonNil(b.queue.List(f))})
	})
	mux.HandleFunc("GET /v1/builds/{id}", func(w http.ResponseWriter, r *http.Request) {
		rec, err := b.queue.Get(r.PathValue("id"))
		if err != nil {
			api.WriteError(w, buildError(err))
			return
		}
		api.WriteJSON(w, http.StatusOK, rec)
	})
	mux.HandleFunc("GET /v1/builds/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		follow := r.URL.Query().Get("follow") == "true"
		rc, err := b.queue.Logs(r.Context(), r.PathValue("id"), follow)
		if err != nil {
			api.WriteError(w, buildError(err))
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fl, _ := w.(http.Flusher)
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if fl != nil {
					fl.Flush()
				}
			}
			if err != nil {
				return
			}
		}
	})
	mux.HandleFunc("POST /v1/builds/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if err := b.queue.Cancel(r.PathValue("id")); err != nil {
			api.WriteError(w, buildError(err))
			return
		}
		rec, _ := b.queue.Get(r.PathValue("id"))
		api.WriteJSON(w, http.StatusOK, rec)
	})
	mux.HandleFunc("GET /v1/previews", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"previews": b.follower.Previews(false)})
	})
	mux.HandleFunc("GET /v1/build-sources", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"apps": b.follower.Apps()})
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func buildError(err error) error {
	switch {
	case errors.Is(err, imagebuild.ErrNotFound):
		return api.Errorf(http.StatusNotFound, "%v: see `gluebox build list`", err)
	case errors.Is(err, imagebuild.ErrFinished):
		return api.Errorf(http.StatusConflict, "%v", err)
	}
	return err
}

// lazyDaemon runs buildkitd only once the first build starts, so a node that builds nothing
// does not pay its memory.
type lazyDaemon struct {
	d    *imagebuild.Daemon
	once sync.Once
	need chan struct{}
}

var _ supervise.Component = (*lazyDaemon)(nil)

func (l *lazyDaemon) Name() string { return "buildkitd" }

// Run waits for the first build, then runs buildkitd until ctx ends.
func (l *lazyDaemon) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-l.need:
	}
	return l.d.Run(ctx)
}

// WaitReady is at once: buildkitd's readiness is waited for by the builds that need it.
func (l *lazyDaemon) WaitReady(context.Context) error { return nil }

// StopTimeout bounds buildkitd's stop.
func (l *lazyDaemon) StopTimeout() time.Duration { return l.d.StopTimeout() }

// ensure starts buildkitd if it is not running yet and waits until it answers.
func (l *lazyDaemon) ensure(ctx context.Context, w io.Writer) error {
	started := false
	l.once.Do(func() { close(l.need); started = true })
	if started {
		fmt.Fprintln(w, "starting buildkitd (first build since gluebox started)")
	}
	if err := l.d.WaitReady(ctx); err != nil {
		return fmt.Errorf("build: buildkitd is not ready: %w", err)
	}
	return nil
}
