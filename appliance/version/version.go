// Package version reports the versions of gluebox and of every component it embeds. The values
// are stamped at link time by the Makefile; anything may import it.
package version

import (
	"runtime/debug"

	kversion "k8s.io/component-base/version"
)

// Version is gluebox's own version, set with -ldflags -X by the Makefile.
var Version = "dev"

// Info lists gluebox's version and those of the Kubernetes parts linked into it. Bundled
// programs report their own versions (see the bundle's manifest).
func Info() map[string]string {
	out := map[string]string{
		"gluebox":    Version,
		"kubernetes": kversion.Get().GitVersion,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		out["go"] = bi.GoVersion
		for _, d := range bi.Deps {
			switch d.Path {
			case "github.com/k3s-io/kine":
				out["kine"] = d.Version
			}
		}
	}
	return out
}
