package testnode

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/gluebox/gluebox/appliance/ociimage"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listener inside the node's network namespace, so a server run by the test
// process (a Git server, a webhook receiver) is reachable from the node at addr, e.g.
// "10.99.0.2:0" or "127.0.0.1:0". A socket keeps the namespace it was created in.
func (n *Node) Listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := n.inNetNS(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// inNetNS runs f on an OS thread that is inside the node's network namespace. Sockets f opens
// keep that namespace after the thread leaves it.
func (n *Node) inNetNS(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		// The thread is only returned to the scheduler once it is back in its own namespace;
		// otherwise it dies with this goroutine.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + n.NetNS)
		if err != nil {
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("enter netns %s: %w", n.NetNS, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- ferr
	}()
	return <-ch
}

// DialContext connects from inside the node's network namespace, for clients run by the test
// process (an HTTP transport's DialContext, for example) that must reach the node's
// loopback-only listeners.
func (n *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.inNetNS(func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient is an HTTP client whose connections start inside the node's namespace.
func (n *Node) HTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: n.DialContext}}
}

// PushImage builds the Go package pkg (relative to the repository root repo) as a static
// binary, wraps it in a single-binary image and pushes it to the node's registry as ref
// (e.g. 127.0.0.1:5000/e2e/hello:1).
func (n *Node) PushImage(repo, pkg, ref string) error {
	dir, err := os.MkdirTemp(n.Root, "image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "app")
	build := exec.Command("go", "build", "-o", bin, "./"+pkg)
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	tar := filepath.Join(dir, "image.tar")
	if err := ociimage.WriteSingleBinary(tar, bin, ref, "/app"); err != nil {
		return err
	}
	img, err := tarball.ImageFromPath(tar, nil)
	if err != nil {
		return err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, remote.WithTransport(n.HTTPClient().Transport)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}
