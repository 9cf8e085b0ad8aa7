package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/testnode"
)

// frontDoor is the node's front door HTTP address inside its namespace (see testnode.Start).
const frontDoor = "127.0.0.1:18080"

// gitServer starts a real Git server (git http-backend) that listens inside the node's
// namespace, so gluebox reaches it as any remote.
func (n *node) gitServer() *gittest.Server {
	n.t.Helper()
	l, err := n.Listen(testnode.NodeIP + ":0")
	if err != nil {
		n.t.Fatal(err)
	}
	return gittest.NewServerWith(n.t, gittest.Options{Listener: l})
}

// get fetches path from the front door as host and returns the body.
func (n *node) get(host, path string) (string, error) {
	return n.Curl("-H", "Host: "+host, "http://"+frontDoor+path)
}

// serves polls until host answers path with want.
func (n *node) serves(host, path, want string, timeout time.Duration) {
	n.t.Helper()
	n.Eventually(fmt.Sprintf("%s%s serves %q", host, path, want), timeout, func() error {
		got, err := n.get(host, path)
		if err != nil {
			return fmt.Errorf("%v: %s", err, got)
		}
		if strings.TrimSpace(got) != want {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
}

// appShow returns `gluebox app show app env`.
func (n *node) appShow(app, env string) string {
	out, _ := n.Gluebox("app", "show", app, env)
	return out
}

// pushWebhook delivers a signed GitHub push event for repoURL's branch main to the front door.
func (n *node) pushWebhook(repoURL, before, after string) {
	n.t.Helper()
	n.webhook("push", after, map[string]any{
		"ref": "refs/heads/main", "before": before, "after": after,
		"repository": map[string]string{"clone_url": repoURL},
	})
}

// pullRequestWebhook delivers a signed GitHub pull_request event (action "opened",
// "synchronize", "closed"…) for pull request number of repoURL, whose head is branch at sha.
func (n *node) pullRequestWebhook(repoURL, action string, number int, branch, sha string) {
	n.t.Helper()
	n.webhook("pull_request", fmt.Sprintf("pr-%d-%s-%s", number, action, sha), map[string]any{
		"action": action, "number": number,
		"pull_request": map[string]any{
			"number": number,
			"head":   map[string]string{"ref": branch, "sha": sha},
			"base":   map[string]string{"ref": "main"},
		},
		"repository": map[string]string{"clone_url": repoURL},
	})
}

// webhook signs payload with gluebox's webhook secret and delivers it to the front door as a
// GitHub event.
func (n *node) webhook(event, delivery string, payload any) {
	n.t.Helper()
	secret, err := n.Gluebox("secret", "get", "secret/gluebox/webhook", "secret")
	if err != nil {
		n.t.Fatalf("webhook secret: %v: %s", err, secret)
	}
	body, _ := json.Marshal(payload)
	mac := hmac.New(sha256.New, []byte(strings.TrimSpace(secret)))
	mac.Write(body)
	f := filepath.Join(n.Root, "hook.json")
	if err := os.WriteFile(f, body, 0o644); err != nil {
		n.t.Fatal(err)
	}
	out, err := n.Curl("-X", "POST", "-H", "Content-Type: application/json", "-H", "X-GitHub-Event: "+event,
		"-H", "X-GitHub-Delivery: "+delivery, "-H", "X-Hub-Signature-256: sha256="+hex.EncodeToString(mac.Sum(nil)),
		"--data-binary", "@"+f, "http://"+frontDoor+"/.gluebox/webhook")
	if err != nil {
		n.t.Fatalf("webhook delivery: %v: %s", err, out)
	}
}

func helloEnv(greeting string, replicas int) string {
	return fmt.Sprintf(`image:
  registry: registry.gluebox.local
  repository: e2e/hello
  tag: "1"
  port: 8080
deployment:
  enabled: true
  replicas: %d
  envVariables:
    - name: GREETING
      value: %q
  readinessProbe:
    httpGet: {path: /, port: 8080}
    periodSeconds: 1
service:
  enabled: true
ingress:
  enabled: true
`, replicas, greeting)
}

// TestGitOps follows a deployment-configurations repository on a real Git server: an app env
// committed there is served through the front door by host name; a change delivered by
// webhook rolls out; a broken commit is reported and the previous version keeps serving; a
// change made by hand is put back; a rollback serves the earlier version and holds; deleting
// the env folder prunes the namespace.
func TestGitOps(t *testing.T) {
	n := newNode(t)
	// A long poll interval, so the webhook is what makes the second change arrive quickly.
	n.Start("--poll-interval", "2s", "--resync-interval", "5s", "--health-timeout", "3m")
	n.pushImage("testdata/images/hello", "127.0.0.1:5000/e2e/hello:1")
	git := n.gitServer()
	const file, host = "apps/hello/envs/dev/values.yaml", "hello-dev.gluebox.local"

	c1 := git.Commit(map[string]string{file: helloEnv("one", 1)}, "hello dev")
	if out, err := n.Gluebox("repo", "set-config", git.URL()); err != nil {
		t.Fatalf("repo set-config: %v\n%s", err, out)
	}
	n.serves(host, "/env?name=GREETING", "one", 4*time.Minute)
	n.Eventually("app list shows hello/dev healthy", time.Minute, func() error {
		out, err := n.Gluebox("app", "list")
		if err != nil || !strings.Contains(out, "hello") || !strings.Contains(out, "Healthy") || !strings.Contains(out, c1[:12]) {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// HTTPS with a certificate from the front door's CA, for the routed host only.
	ca := filepath.Join(n.DataDir, "pki", "ingress", "ingress-ca.crt")
	if out, err := n.Curl("--cacert", ca, "--resolve", host+":18443:127.0.0.1", "https://"+host+":18443/env?name=GREETING"); err != nil || out != "one" {
		t.Fatalf("https through the front door: %v: %s", err, out)
	}
	if out, err := n.Curl("--cacert", ca, "--resolve", "other.gluebox.local:18443:127.0.0.1", "https://other.gluebox.local:18443/"); err == nil {
		t.Fatalf("the front door served TLS for a host no Ingress names: %s", out)
	}
	if ns := n.MustKubectl("get", "ns", "hello-dev", "-o", "jsonpath={.metadata.labels}"); !strings.Contains(ns, `"gluebox.dev/env":"dev"`) {
		t.Fatalf("namespace labels: %s", ns)
	}

	// Values change delivered by webhook: replicas and env var roll out.
	c2 := git.Commit(map[string]string{file: helloEnv("two", 2)}, "two replicas")
	n.pushWebhook(git.URL(), c1, c2)
	n.serves(host, "/env?name=GREETING", "two", 2*time.Minute)
	n.Eventually("two replicas ready", 2*time.Minute, func() error {
		out, err := n.Kubectl("-n", "hello-dev", "get", "deploy", "hello", "-o", "jsonpath={.status.readyReplicas}")
		if err != nil || out != "2" {
			return fmt.Errorf("readyReplicas %q %v", out, err)
		}
		return nil
	})

	// Broken YAML: a clear error in the status, the previous version keeps serving.
	git.Commit(map[string]string{file: "deployment: [oops\n"}, "broken")
	n.Eventually("render error reported", time.Minute, func() error {
		if out := n.appShow("hello", "dev"); !strings.Contains(out, "last error") || !strings.Contains(out, "values.yaml") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	n.serves(host, "/env?name=GREETING", "two", 10*time.Second)

	// Fixed with a third greeting.
	git.Commit(map[string]string{file: helloEnv("three", 1)}, "three")
	n.serves(host, "/env?name=GREETING", "three", 2*time.Minute)

	// A hand edit is put back and reported as drift.
	n.MustKubectl("-n", "hello-dev", "scale", "deploy/hello", "--replicas=3")
	n.Eventually("hand edit put back", time.Minute, func() error {
		out := n.appShow("hello", "dev")
		if !strings.Contains(out, "drift:") || !strings.Contains(out, "Deployment/hello-dev/hello") {
			return fmt.Errorf("%s", out)
		}
		spec, _ := n.Kubectl("-n", "hello-dev", "get", "deploy", "hello", "-o", "jsonpath={.spec.replicas}")
		if spec != "1" {
			return fmt.Errorf("spec.replicas %q", spec)
		}
		return nil
	})

	// Rollback serves the earlier version and holds it across resyncs.
	if out, err := n.Gluebox("app", "rollback", "hello", "dev"); err != nil {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	n.serves(host, "/env?name=GREETING", "two", 2*time.Minute)
	if out := n.appShow("hello", "dev"); !strings.Contains(out, "held:") {
		t.Fatalf("rolled-back environment not held:\n%s", out)
	}
	rolledBack := time.Now()
	n.Eventually("a resync after the rollback", time.Minute, func() error {
		var v engine.EnvView
		out, err := n.Gluebox("app", "show", "hello", "dev", "--json")
		if err == nil {
			err = json.Unmarshal([]byte(out), &v)
		}
		if err != nil || !v.LastSyncAt.After(rolledBack) {
			return fmt.Errorf("no sync since the rollback yet (%v)", err)
		}
		if !v.Held {
			return testnode.Permanent(fmt.Errorf("a resync released the hold: %s", out))
		}
		return nil
	})
	n.serves(host, "/env?name=GREETING", "two", 5*time.Second)
	if out, err := n.Gluebox("app", "release", "hello", "dev"); err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	n.serves(host, "/env?name=GREETING", "three", 2*time.Minute)

	// Deleting the env folder deletes the environment.
	git.Commit(map[string]string{file: gittest.Deleted}, "remove dev")
	n.Eventually("namespace hello-dev deleted", 3*time.Minute, func() error {
		out, err := n.Kubectl("get", "ns", "hello-dev", "--ignore-not-found", "-o", "name")
		if err != nil || out != "" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out, _ := n.Gluebox("app", "list"); strings.Contains(out, "hello-dev") {
		t.Fatalf("removed environment still listed:\n%s", out)
	}
}
