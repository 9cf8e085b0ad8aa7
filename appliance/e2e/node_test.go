package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const helloImage = "gluebox.local/e2e-hello:1"

const workload = `
apiVersion: v1
kind: Namespace
metadata: {name: e2e}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: e2e}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: ` + helloImage + `
          imagePullPolicy: Never
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: e2e}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: e2e}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: store, namespace: e2e}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: store}}
  template:
    metadata: {labels: {app: store}}
    spec:
      containers:
        - name: store
          image: ` + helloImage + `
          imagePullPolicy: Never
          args: ["-data", "/data"]
          volumeMounts: [{name: data, mountPath: /data}]
          readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 2}
      volumes:
        - name: data
          persistentVolumeClaim: {claimName: data}
`

// TestNodeLifecycle boots a node, runs a workload with a Service, DNS and a persistent
// volume, restarts gluebox under the running workload, then stops and cleans up.
func TestNodeLifecycle(t *testing.T) {
	n := newNode(t)
	n.Start()

	n.ImportImage("testdata/images/hello", helloImage)
	n.Apply(workload)
	n.MustKubectl("-n", "e2e", "rollout", "status", "deploy/web", "--timeout=180s")
	n.MustKubectl("-n", "e2e", "rollout", "status", "deploy/store", "--timeout=180s")
	if phase := n.MustKubectl("-n", "e2e", "get", "pvc", "data", "-o", "jsonpath={.status.phase}"); phase != "Bound" {
		t.Fatalf("PVC phase = %q, want Bound", phase)
	}

	// A Service reached by ClusterIP from the host.
	clusterIP := n.MustKubectl("-n", "e2e", "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
	n.Eventually("service answers on its ClusterIP", time.Minute, func() error {
		out, err := n.Curl("http://" + clusterIP + "/")
		if err != nil || !strings.HasPrefix(out, "hello from web-") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})

	// The same Service by DNS name from another pod.
	storeIP := func() string {
		return n.MustKubectl("-n", "e2e", "get", "pods", "-l", "app=store", "--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].status.podIP}")
	}
	n.Eventually("service answers by DNS name from another pod", time.Minute, func() error {
		out, err := n.Curl("http://" + storeIP() + ":8080/fetch?url=http://web.e2e.svc.cluster.local/")
		if err != nil || !strings.HasPrefix(out, "hello from web-") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})

	// Data on the PVC survives the pod being replaced.
	if out, err := n.Curl("http://" + storeIP() + ":8080/write?v=kept-across-restarts"); err != nil {
		t.Fatalf("write: %v %s", err, out)
	}
	oldStore := n.MustKubectl("-n", "e2e", "get", "pods", "-l", "app=store", "-o", "jsonpath={.items[0].metadata.name}")
	n.MustKubectl("-n", "e2e", "delete", "pod", oldStore, "--wait=true")
	n.MustKubectl("-n", "e2e", "rollout", "status", "deploy/store", "--timeout=180s")
	n.Eventually("new store pod reads the volume", 2*time.Minute, func() error {
		out, err := n.Curl("http://" + storeIP() + ":8080/read")
		if err != nil || out != "kept-across-restarts" {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})

	// Restart gluebox: the workload keeps running meanwhile and is adopted afterwards.
	uidsBefore := n.MustKubectl("-n", "e2e", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.uid} {end}")
	webPodIP := n.MustKubectl("-n", "e2e", "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}")
	n.Stop()
	if out, err := n.Curl("http://" + webPodIP + ":8080/"); err != nil || !strings.HasPrefix(out, "hello from web-") {
		t.Fatalf("pod stopped serving while gluebox was down: %v %q", err, out)
	}
	n.Start()
	n.MustKubectl("-n", "e2e", "rollout", "status", "deploy/web", "--timeout=180s")
	uidsAfter := n.MustKubectl("-n", "e2e", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.uid} {end}")
	if uidsAfter != uidsBefore {
		t.Errorf("pods were replaced across a gluebox restart:\nbefore %s\nafter  %s", uidsBefore, uidsAfter)
	}
	restarts := n.MustKubectl("-n", "e2e", "get", "pods", "-o", "jsonpath={range .items[*]}{.status.containerStatuses[0].restartCount} {end}")
	if strings.Trim(restarts, "0 ") != "" {
		t.Errorf("containers restarted across a gluebox restart: %s", restarts)
	}
	n.Eventually("service still answers after restart", time.Minute, func() error {
		out, err := n.Curl("http://" + clusterIP + "/")
		if err != nil || !strings.HasPrefix(out, "hello from web-") {
			return fmt.Errorf("%v: %q", err, out)
		}
		return nil
	})

	// Stop and clean up: nothing of the instance may remain.
	n.Stop()
	if out, err := n.Run(2*time.Minute, n.Bin, "cleanup", "--data-dir", n.DataDir); err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if out, _ := n.Run(10*time.Second, "ip", "link", "show", "gbx0"); !strings.Contains(out, "does not exist") {
		t.Errorf("pod bridge still present after cleanup: %s", out)
	}
	if out, _ := n.Run(10*time.Second, "iptables-save"); strings.Contains(out, "KUBE-") || strings.Contains(out, "CNI-") {
		t.Errorf("iptables chains left after cleanup:\n%s", out)
	}
	if mounts := mountsUnder(t, n.DataDir); len(mounts) != 0 {
		t.Errorf("mounts left after cleanup: %v", mounts)
	}
	if procs := processesUnder(n.DataDir); len(procs) != 0 {
		t.Errorf("processes left after cleanup: %v", procs)
	}
}

func mountsUnder(t *testing.T, dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir) {
			out = append(out, fields[4])
		}
	}
	return out
}

func processesUnder(dir string) []string {
	out, _ := exec.Command("sh", "-c", "for p in /proc/[0-9]*; do readlink $p/exe; done 2>/dev/null").Output()
	var procs []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, dir) {
			procs = append(procs, l)
		}
	}
	return procs
}
