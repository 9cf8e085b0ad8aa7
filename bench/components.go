package main

import (
	"io"
	"os"

	"github.com/gluebox/gluebox/bench/internal/logsbench"
	"github.com/gluebox/gluebox/bench/internal/metricsbench"
	"github.com/gluebox/gluebox/bench/internal/registrybench"
	"github.com/gluebox/gluebox/bench/internal/secretsbench"
)

// componentGroups returns the benchmarks of single components (bench/internal/*bench); each
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
		{"registry", scratch(registrybench.Run)},
		{"secrets", scratch(secretsbench.Run)},
		{"metrics", scratch(metricsbench.Run)},
		{"logs", scratch(logsbench.Run)},
	}
}
