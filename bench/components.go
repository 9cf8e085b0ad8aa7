package main

import (
	"io"
	"os"

	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
)

// componentGroups returns the benchmarks that components bring as RunBench functions; each
// runs in a scratch directory on the data disk.
func componentGroups() []group {
	scratch := func(f func(io.Writer, string) error) func(io.Writer) error {
		return func(w io.Writer) error {
			dir, err := os.MkdirTemp("/var/tmp", "gluebox-bench-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			return f(w, dir)
		}
	}
	return []group{
		{"registry", scratch(registry.RunBench)},
		{"secrets", scratch(secrets.RunBench)},
		{"metrics", scratch(metrics.RunBench)},
		{"logs", scratch(logs.RunBench)},
	}
}
