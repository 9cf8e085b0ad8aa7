// Package assets holds the files gluebox ships inside its binary: today the built-in Helm chart
// that every app environment of a deployment-configurations repository is rendered with.
//
// Everything here is read-only data embedded with go:embed; any package may import it.
package assets

import (
	"embed"
	"io/fs"
)

//go:embed all:charts
var charts embed.FS

// AppChart returns the built-in app chart: Chart.yaml, values.yaml, values.schema.json and
// templates/ at the root of the returned file system. Its values keys follow the GlueOps
// "app" chart where the two overlap.
func AppChart() fs.FS {
	sub, err := fs.Sub(charts, "charts/app")
	if err != nil {
		// fs.Sub fails only on an invalid path, and this one is a constant.
		panic("assets: " + err.Error())
	}
	return sub
}
