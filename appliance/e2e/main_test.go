package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestMain doubles as a helper process: with GBX_E2E_PUSH=<tarball>=<ref> it pushes an image
// tarball to a registry and exits. Tests run it inside a node's network namespace to reach the
// node's loopback-only registry.
func TestMain(m *testing.M) {
	if spec := os.Getenv("GBX_E2E_PUSH"); spec != "" {
		if err := push(spec); err != nil {
			fmt.Fprintln(os.Stderr, "push:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func push(spec string) error {
	var file, ref string
	for i := len(spec) - 1; i >= 0; i-- {
		if spec[i] == '=' {
			file, ref = spec[:i], spec[i+1:]
			break
		}
	}
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img)
}
