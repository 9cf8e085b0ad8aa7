// Package build owns gluebox's image builder: BuildKit's buildkitd as a supervised child on
// gluebox's containerd (Daemon), Dockerfile builds pushed to the built-in registry (Builder),
// and the build queue with its records and log files (Queue).
//
// How the parts fit:
//
//   - Daemon writes buildkitd.toml and runs the bundled buildkitd with its containerd worker in
//     its own containerd namespace ("buildkit", apart from the kubelet's "k8s.io"), the built-in
//     registry as a plain-HTTP registry and as a mirror, and a bounded build cache that survives
//     restarts. It is a supervise.Component, ready once buildkitd lists a worker.
//   - Builder builds one Dockerfile with the BuildKit Go client and the dockerfile.v0 frontend
//     and pushes the image to one or more refs. The client runs as the bundled buildkit-client
//     program (embed/buildkit/cmd/buildkit-client): BuildKit's client cannot be linked into
//     gluebox itself without moving the containerd modules Kubernetes pins. Builder talks to it over a JSON
//     request on stdin, the plain-text progress on stdout and a JSON result file.
//   - Queue runs builds with a concurrency limit, one at a time per (app, branch), replaces a
//     queued build by a newer one of the same key, keeps every build's log in a file that can
//     be followed while it runs, and persists its records so `gluebox build list` survives
//     restarts. It knows nothing of Git or BuildKit: callers hand it a checked-out context
//     directory and the refs to push, and a BuildFunc (normally Builder.Build) does the work.
//
// Lifecycle: NewDaemon, then Run (until its context ends) and WaitReady; NewBuilder needs no
// start; NewQueue loads the records, Run dispatches builds until its context ends.
//
// Who may import it: the server wiring, the GitOps engine (to submit builds and find the newest
// successful build of a branch) and the API/CLI layer (list, logs, cancel). It imports only
// appliance/supervise and third-party modules.
package imagebuild
