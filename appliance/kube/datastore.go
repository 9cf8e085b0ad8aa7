package kube

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/endpoint"
)

// Datastore runs kine, which gives the apiserver an etcd API on top of SQLite (default) or an
// external PostgreSQL/MySQL; an etcd endpoint is passed through without kine.
type Datastore struct {
	// Dir holds the SQLite database and kine's socket.
	Dir string
	// Endpoint is --datastore-endpoint; empty means SQLite in Dir.
	Endpoint string
	// LogFile receives kine's own log lines.
	LogFile string
	Log     *slog.Logger

	mu        sync.Mutex
	endpoints []string
	ready     chan struct{}
}

// NewDatastore returns a Datastore for the given dir and endpoint.
func NewDatastore(dir, endpointURL, logFile string, log *slog.Logger) *Datastore {
	return &Datastore{Dir: dir, Endpoint: endpointURL, LogFile: logFile, Log: log, ready: make(chan struct{})}
}

// Name implements supervise.Component.
func (d *Datastore) Name() string { return "datastore" }

// Critical implements supervise.Critical: without it the node is not a node, so its
// failure ends the process.
func (d *Datastore) Critical() bool { return true }

// Endpoints returns the etcd endpoints the apiserver should use; valid once ready.
func (d *Datastore) Endpoints() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.endpoints
}

// IsEtcd reports whether the endpoint is a real etcd, which the apiserver talks to directly.
func IsEtcd(ep string) bool {
	return strings.HasPrefix(ep, "http://") || strings.HasPrefix(ep, "https://")
}

// Run implements supervise.Component.
func (d *Datastore) Run(ctx context.Context) error {
	if IsEtcd(d.Endpoint) {
		d.mu.Lock()
		d.endpoints = strings.Split(d.Endpoint, ",")
		d.mu.Unlock()
		close(d.ready)
		<-ctx.Done()
		return nil
	}
	if err := os.MkdirAll(d.Dir, 0o700); err != nil {
		return fmt.Errorf("cannot create datastore dir: %w", err)
	}
	ep := d.Endpoint
	if ep == "" {
		ep = "sqlite://" + filepath.Join(d.Dir, "state.db") + "?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate&cache=shared"
	}
	var wg sync.WaitGroup
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg := endpoint.Config{
		Listener:            "unix://" + filepath.Join(d.Dir, "kine.sock"),
		Endpoint:            ep,
		WaitGroup:           &wg,
		NotifyInterval:      5 * time.Second,
		EmulatedETCDVersion: "3.5.13",
		CompactInterval:     5 * time.Minute,
		CompactTimeout:      5 * time.Second,
		CompactMinRetain:    1000,
		CompactBatchSize:    1000,
		PollBatchSize:       500,
		PollInterval:        time.Second,
	}
	etcd, err := endpoint.Listen(kctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot start kine on %s: %w", redact(ep), err)
	}
	d.mu.Lock()
	d.endpoints = etcd.Endpoints
	d.mu.Unlock()
	close(d.ready)
	<-ctx.Done()
	cancel()
	wg.Wait()
	return nil
}

// WaitReady implements supervise.Component.
func (d *Datastore) WaitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redact hides a password in a datastore URL for logs and errors.
func redact(ep string) string {
	if i := strings.Index(ep, "://"); i >= 0 {
		if j := strings.Index(ep[i+3:], "@"); j >= 0 {
			return ep[:i+3] + "***@" + ep[i+3+j+1:]
		}
	}
	return ep
}
