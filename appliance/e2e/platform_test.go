package e2e

import (
	"os"
	"path/filepath"

	"fmt"
	"github.com/gluebox/gluebox/appliance/ociimage"
	"strings"
	"testing"
	"time"
)

// pushImage builds a testdata Go package into an image and pushes it to the node's built-in
// registry as ref (e.g. 127.0.0.1:5000/e2e/hello:1), connecting from inside the node's namespace.
func (n *node) pushImage(pkg, ref string) {
	n.t.Helper()
	if err := n.PushImage(repoRoot(), pkg, ref); err != nil {
		n.t.Fatal(err)
	}
}

// TestRegistryAndSecrets pushes an image to the built-in registry and runs it by the registry's
// alias, then feeds it a secret from the store and checks that changing the secret rolls the
// pod to the new value.
func TestRegistryAndSecrets(t *testing.T) {
	n := newNode(t)
	n.Start()
	n.pushImage("testdata/images/hello", "127.0.0.1:5000/e2e/hello:1")
	// An image tarball imported with the CLI lands in the registry too.
	tarFile := filepath.Join(n.Root, "imported.tar")
	self, _ := os.Executable()
	if err := ociimage.WriteSingleBinary(tarFile, self, "example.com/e2e/imported:1", "/app"); err != nil {
		t.Fatal(err)
	}
	if out, err := n.Gluebox("image", "import", tarFile); err != nil || !strings.Contains(out, "e2e/imported:1@sha256:") {
		t.Fatalf("image import: %v\n%s", err, out)
	}
	if out, err := n.Gluebox("registry", "list"); err != nil || !strings.Contains(out, "e2e/hello") || !strings.Contains(out, "e2e/imported") {
		t.Fatalf("registry list: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"secret", "set", "secret/e2e", "GREETING", "hello-1"},
		{"secret", "bind", "e2e", "app-env", "secret/e2e"},
	} {
		if args[1] == "bind" {
			n.MustKubectl("create", "namespace", "e2e")
		}
		if out, err := n.Gluebox(args...); err != nil {
			t.Fatalf("gluebox %v: %v\n%s", args, err, out)
		}
	}
	n.Apply(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: e2e}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - name: app
          image: registry.gluebox.local/e2e/hello:1
          imagePullPolicy: Always
          envFrom: [{secretRef: {name: app-env}}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
`)
	n.MustKubectl("-n", "e2e", "rollout", "status", "deploy/app", "--timeout=180s")
	greeting := func() (string, error) {
		ip, err := n.Kubectl("-n", "e2e", "get", "pods", "-l", "app=app", "--field-selector=status.phase=Running",
			"-o", "jsonpath={.items[*].status.podIP}")
		if err != nil || ip == "" || strings.Contains(ip, " ") {
			return "", fmt.Errorf("want one running pod, got %q %v", ip, err)
		}
		return n.Curl("http://" + ip + ":8080/env?name=GREETING")
	}
	n.Eventually("pod sees the secret", time.Minute, func() error {
		if got, err := greeting(); err != nil || got != "hello-1" {
			return fmt.Errorf("GREETING=%q %v", got, err)
		}
		return nil
	})
	if out, err := n.Gluebox("secret", "set", "secret/e2e", "GREETING", "hello-2"); err != nil {
		t.Fatalf("secret set: %v\n%s", err, out)
	}
	n.Eventually("pod is replaced and sees the new value", 3*time.Minute, func() error {
		if got, err := greeting(); err != nil || got != "hello-2" {
			return fmt.Errorf("GREETING=%q %v", got, err)
		}
		return nil
	})
	if data := n.MustKubectl("-n", "e2e", "get", "secret", "app-env", "-o", "jsonpath={.data.GREETING}"); data != "aGVsbG8tMg==" {
		t.Errorf("Kubernetes Secret holds %q, want base64 of hello-2", data)
	}
}
