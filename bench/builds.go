package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
	"github.com/gluebox/gluebox/appliance/imagebuild"
	"github.com/gluebox/gluebox/appliance/testnode"
)

// runBuilds boots a node that follows a deployment-configurations repository whose
// platform.yaml lists the sample app (testdata/apps/shop: two stages, a RUN step, FROM the
// imported busybox) and measures: the cold first build (buildkitd starting, nothing cached),
// the warm build of a one-line change (cache hits for the unchanged steps), and a one-line
// change from `git push` + webhook to the new version answering through the front door.
func runBuilds(w io.Writer, bin string) error {
	return withBenchT(func(t *benchT) error { return buildsBench(w, t, bin) })
}

func buildsBench(w io.Writer, t *benchT, bin string) error {
	df, err := os.ReadFile(filepath.Join("testdata", "apps", "shop", "Dockerfile"))
	if err != nil {
		return err
	}
	n, err := testnode.New(bin)
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Start(10*time.Minute, "--poll-interval", "15s"); err != nil {
		return fmt.Errorf("boot: %w\n%s", err, n.Logs(4000))
	}
	if err := n.ImportBusybox(); err != nil {
		return err
	}
	listen := func() *gittest.Server {
		l, err := n.Listen(testnode.NodeIP + ":0")
		if err != nil {
			t.Fatalf("%v", err)
		}
		return gittest.NewServerWith(t, gittest.Options{Listener: l})
	}
	app, cfg := listen(), listen()
	last := app.Commit(map[string]string{"Dockerfile": string(df), "message.txt": "v0\n"}, "v0")
	cfg.Commit(map[string]string{
		"platform.yaml": "apps:\n  - name: shop\n    repo: " + app.URL() + "\n",
		"apps/shop/envs/prod/values.yaml": `image: {tag: main, port: 8080}
deployment:
  enabled: true
  readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
service: {enabled: true}
ingress: {enabled: true}
`,
	}, "shop")
	client := n.HTTPClient()
	serving := func(want string, timeout time.Duration) error {
		return frontDoorServes(client, "shop-prod.gluebox.local", "/", want, timeout)
	}
	buildOf := func(commit string) (imagebuild.Record, error) {
		var rec imagebuild.Record
		err := testnode.Eventually(10*time.Minute, func() error {
			out, err := n.Gluebox("build", "list", "--app", "shop", "--branch", "main", "--limit", "1", "--json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			var rs []imagebuild.Record
			if err := json.Unmarshal([]byte(out), &rs); err != nil {
				return err
			}
			if len(rs) == 0 || rs[0].Commit != commit || !rs[0].Status.Final() {
				return fmt.Errorf("no finished build of %s yet", commit)
			}
			rec = rs[0]
			return nil
		})
		if err == nil && rec.Status != imagebuild.StatusSucceeded {
			logs, _ := n.Gluebox("build", "logs", rec.ID)
			err = fmt.Errorf("build %s %s: %s\n%s", rec.ID, rec.Status, rec.Error, logs)
		}
		return rec, err
	}
	cached := func(rec imagebuild.Record) int {
		logs, _ := n.Gluebox("build", "logs", rec.ID)
		return strings.Count(logs, " CACHED")
	}

	start := time.Now()
	if out, err := n.Gluebox("repo", "set-config", cfg.URL()); err != nil {
		return fmt.Errorf("repo set-config: %v: %s", err, out)
	}
	cold, err := buildOf(last)
	if err != nil {
		return err
	}
	if err := serving("v0", 5*time.Minute); err != nil {
		return fmt.Errorf("first deploy: %w\n%s", err, n.Logs(4000))
	}
	fmt.Fprintf(w, "build_cold: %.1f s (first build: buildkitd start, base image from the built-in registry, nothing cached; %d cached steps)\n",
		time.Duration(cold.DurationMS*int64(time.Millisecond)).Seconds(), cached(cold))
	fmt.Fprintf(w, "build_first_deploy_to_serving: %.1f s (repo set-config to the built app answering through the front door)\n", time.Since(start).Seconds())

	secret, err := n.Gluebox("secret", "get", "secret/gluebox/webhook", "secret")
	if err != nil {
		return fmt.Errorf("webhook secret: %v: %s", err, secret)
	}
	var warm, e2e []float64
	var hits int
	for i := 1; i <= 3; i++ {
		msg := fmt.Sprintf("v%d", i)
		start := time.Now()
		sha := app.Commit(map[string]string{"message.txt": msg + "\n"}, msg)
		if err := deliverPush(client, strings.TrimSpace(secret), app.URL(), last, sha); err != nil {
			return err
		}
		last = sha
		rec, err := buildOf(sha)
		if err != nil {
			return err
		}
		if err := serving(msg, 3*time.Minute); err != nil {
			return err
		}
		e2e = append(e2e, time.Since(start).Seconds())
		warm = append(warm, time.Duration(rec.DurationMS*int64(time.Millisecond)).Seconds())
		hits = cached(rec)
	}
	sort.Float64s(warm)
	sort.Float64s(e2e)
	fmt.Fprintf(w, "build_warm: %.1f s median of %d (one-line change, %d cached steps; min %.1f, max %.1f)\n", warm[1], len(warm), hits, warm[0], warm[2])
	fmt.Fprintf(w, "build_webhook_to_serving: %.1f s median of %d (push + webhook → build → deploy → answering; min %.1f, max %.1f; target <= 20)\n",
		e2e[1], len(e2e), e2e[0], e2e[2])
	return nil
}
