package imagebuild

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descBuilds        = prometheus.NewDesc("gluebox_builds_total", "Builds that ended since gluebox started, by final status.", []string{"app", "status"}, nil)
	descBuildFailures = prometheus.NewDesc("gluebox_build_failures_total", "Builds that failed since gluebox started.", []string{"app"}, nil)
	descBuildsQueued  = prometheus.NewDesc("gluebox_builds_in_progress", "Builds queued or running.", []string{"status"}, nil)
)

// Apps lists the apps builds are expected for (the follower's platform.yaml apps), so their
// failure counters exist at 0 before the first failure and increase() sees it.
type Apps interface {
	AppNames() []string
}

// finishCounts counts finished builds by (app, status) since gluebox started.
type finishCounts struct {
	mu sync.Mutex
	n  map[[2]string]float64
}

func (c *finishCounts) add(r Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[2]string]float64{}
	}
	c.n[[2]string{r.App, string(r.Status)}]++
}

// collector exports the build metrics at scrape time.
type collector struct {
	counts *finishCounts
	queue  *Queue
	apps   Apps
}

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBuilds
	ch <- descBuildFailures
	ch <- descBuildsQueued
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.counts.mu.Lock()
	failures := map[string]float64{}
	for k, v := range c.counts.n {
		ch <- prometheus.MustNewConstMetric(descBuilds, prometheus.CounterValue, v, k[0], k[1])
		if k[1] == string(StatusFailed) {
			failures[k[0]] += v
		}
	}
	c.counts.mu.Unlock()
	if c.apps != nil {
		for _, a := range c.apps.AppNames() {
			if _, ok := failures[a]; !ok {
				failures[a] = 0 // so increase() sees the first failure
			}
		}
	}
	for app, v := range failures {
		ch <- prometheus.MustNewConstMetric(descBuildFailures, prometheus.CounterValue, v, app)
	}
	var queued, running float64
	for _, r := range c.queue.List(Filter{}) {
		switch r.Status {
		case StatusQueued:
			queued++
		case StatusRunning:
			running++
		}
	}
	ch <- prometheus.MustNewConstMetric(descBuildsQueued, prometheus.GaugeValue, queued, "queued")
	ch <- prometheus.MustNewConstMetric(descBuildsQueued, prometheus.GaugeValue, running, "running")
}
