package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/imagebuild"
)

const shopValues = `image:
  tag: main
  port: 8080
deployment:
  enabled: true
  replicas: 1
  readinessProbe:
    httpGet: {path: /, port: 8080}
    periodSeconds: 1
service:
  enabled: true
ingress:
  enabled: true
`

// builds lists the builds of app's branch, newest first.
func (n *node) builds(app, branch string) []imagebuild.Record {
	n.t.Helper()
	out, err := n.Gluebox("build", "list", "--app", app, "--branch", branch, "--json")
	if err != nil {
		n.t.Fatalf("build list: %v\n%s", err, out)
	}
	var rs []imagebuild.Record
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		n.t.Fatalf("build list --json: %v\n%s", err, out)
	}
	return rs
}

// buildOf waits for the newest build of app's branch to be of commit and final, and returns it.
func (n *node) buildOf(app, branch, commit string, timeout time.Duration) imagebuild.Record {
	n.t.Helper()
	var rec imagebuild.Record
	n.Eventually(fmt.Sprintf("build of %s %s at %s finished", app, branch, commit[:12]), timeout, func() error {
		rs := n.builds(app, branch)
		if len(rs) == 0 || rs[0].Commit != commit {
			return fmt.Errorf("newest builds: %+v", rs)
		}
		if !rs[0].Status.Final() {
			return fmt.Errorf("build %s is %s", rs[0].ID, rs[0].Status)
		}
		rec = rs[0]
		return nil
	})
	return rec
}

// TestBuilds follows an app repository listed in platform.yaml on a real Git server: a push
// is built by BuildKit at its exact commit (FROM the imported busybox), deployed by digest to
// the environment whose values say image.tag: main, and served through the front door; a new
// push moves it; a broken Dockerfile fails with a readable log and changes nothing; pull
// request 7 gets its own environment serving the pull request's code until it is closed.
func TestBuilds(t *testing.T) {
	// The sample app: a two-stage build whose first stage runs a RUN step on the imported
	// busybox and whose second serves the result with busybox httpd.
	df, err := os.ReadFile(filepath.Join(repoRoot(), "testdata", "apps", "shop", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	shopDockerfile := string(df)
	n := newNode(t)
	n.Start("--poll-interval", "2s", "--resync-interval", "30s")
	if err := n.ImportBusybox(); err != nil {
		t.Fatal(err)
	}

	app := n.gitServer()
	c1 := app.Commit(map[string]string{"Dockerfile": shopDockerfile, "message.txt": "shop v1\n"}, "v1")
	cfg := n.gitServer()
	cfg.Commit(map[string]string{
		"platform.yaml":                                             "apps:\n  - name: shop\n    repo: " + app.URL() + "\n    branches: [main]\n    buildArgs: {FLAVOUR: e2e}\n",
		"apps/shop/envs/prod/values.yaml":                           shopValues,
		"apps/shop/envs/previews/common/values.yaml":                shopValues,
		"apps/shop/envs/previews/pull-request-number/7/values.yaml": "deployment:\n  replicas: 1\n",
	}, "shop")
	if out, err := n.Gluebox("repo", "set-config", cfg.URL()); err != nil {
		t.Fatalf("repo set-config: %v\n%s", err, out)
	}
	const host = "shop-prod.gluebox.local"

	first := n.buildOf("shop", "main", c1, 5*time.Minute)
	if first.Status != imagebuild.StatusSucceeded {
		out, _ := n.Gluebox("build", "logs", first.ID)
		t.Fatalf("first build %+v\n%s", first, out)
	}
	n.serves(host, "/", "shop v1", 3*time.Minute)
	n.serves(host, "/build.txt", "e2e on Linux", 10*time.Second)
	if img := n.MustKubectl("-n", "shop-prod", "get", "deploy", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); img != "registry.gluebox.local/shop@"+first.Digest {
		t.Fatalf("deployed image %q, want the build's digest %s", img, first.Digest)
	}
	logs, err := n.Gluebox("build", "logs", first.ID)
	if err != nil || !strings.Contains(logs, "RUN mkdir -p /www") || !strings.Contains(logs, "pushed "+first.Digest) {
		t.Fatalf("build logs: %v\n%s", err, logs)
	}

	// A push delivered by webhook is built and rolls out by digest.
	c2 := app.Commit(map[string]string{"message.txt": "shop v2\n"}, "v2")
	n.pushWebhook(app.URL(), c1, c2)
	second := n.buildOf("shop", "main", c2, 3*time.Minute)
	if second.Status != imagebuild.StatusSucceeded || second.Digest == first.Digest {
		t.Fatalf("second build %+v", second)
	}
	n.serves(host, "/", "shop v2", 2*time.Minute)
	if out := n.appShow("shop", "prod"); !strings.Contains(out, "registry.gluebox.local/shop@"+second.Digest) || !strings.Contains(out, " build ") {
		t.Fatalf("app show does not show the new build's image and a revision for it:\n%s", out)
	}

	// A broken Dockerfile: the build fails with the line named, v2 keeps serving.
	c3 := app.Commit(map[string]string{"Dockerfile": "FROM busybox\nFORM busybox\n"}, "broken")
	broken := n.buildOf("shop", "main", c3, 2*time.Minute)
	if broken.Status != imagebuild.StatusFailed || !strings.Contains(broken.Error, "Dockerfile:2") {
		t.Fatalf("broken build %+v, want failed naming Dockerfile:2", broken)
	}
	if logs, _ := n.Gluebox("build", "logs", broken.ID); !strings.Contains(logs, "unknown instruction") {
		t.Fatalf("broken build's log does not say what is wrong:\n%s", logs)
	}
	n.serves(host, "/", "shop v2", 10*time.Second)
	n.Eventually("the failed build's log in the logs store", time.Minute, func() error {
		out, err := n.Gluebox("logs", "--query", "source:=build app:=shop build:="+broken.ID, "--grep", "unknown instruction", "--since", "30m")
		if err != nil || !strings.Contains(out, "unknown instruction") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})
	n.Eventually("the failure counted in gluebox_build_failures_total", 90*time.Second, func() error {
		out, err := n.Gluebox("metrics", "query", `gluebox_build_failures_total{app="shop"}`)
		if err != nil || !strings.Contains(out, " 1 @") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})

	// Pull request 7 from branch feature: its own environment with its own code.
	app.Branch = "feature"
	pr := app.Commit(map[string]string{"Dockerfile": shopDockerfile, "message.txt": "shop pr 7\n"}, "pr 7")
	app.SetRef("refs/pull/7/head", pr)
	n.pullRequestWebhook(app.URL(), "opened", 7, "feature", pr)
	if b := n.buildOf("shop", "pr-7", pr, 3*time.Minute); b.Status != imagebuild.StatusSucceeded {
		t.Fatalf("pull request build %+v", b)
	}
	n.serves("shop-pr-7.gluebox.local", "/", "shop pr 7", 3*time.Minute)
	n.serves(host, "/", "shop v2", 5*time.Second)
	if out, err := n.Gluebox("previews"); err != nil || !strings.Contains(out, "shop-pr-7") {
		t.Fatalf("previews: %v\n%s", err, out)
	}

	// Closing it deletes the whole environment, although refs/pull/7/head stays (as on forges).
	n.pullRequestWebhook(app.URL(), "closed", 7, "feature", pr)
	n.Eventually("namespace shop-pr-7 deleted", 3*time.Minute, func() error {
		out, err := n.Kubectl("get", "ns", "shop-pr-7", "--ignore-not-found", "-o", "name")
		if err != nil || out != "" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	n.serves(host, "/", "shop v2", 5*time.Second)

	// The fixed Dockerfile on main deploys again.
	app.Branch = "main"
	c4 := app.Commit(map[string]string{"Dockerfile": shopDockerfile, "message.txt": "shop v4\n"}, "fixed")
	if b := n.buildOf("shop", "main", c4, 3*time.Minute); b.Status != imagebuild.StatusSucceeded {
		t.Fatalf("fixed build %+v", b)
	}
	n.serves(host, "/", "shop v4", 2*time.Minute)
}
