// Package imagebuild owns gluebox's image builder: BuildKit's buildkitd as a supervised child
// on gluebox's containerd (Daemon, started on the first build by LazyDaemon), Dockerfile builds
// pushed to the built-in registry (Builder), the build queue with its records and log files
// (Queue), the image index built from them (Index), and the builds API, metrics and log
// shipping (Service).
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
//     Consumers subscribe to finished builds with OnFinish.
//   - Index answers (app, branch or "pr-<n>") → the newest successful build's digest, from the
//     queue's records: the GitOps engine and the preview store read it.
//   - Service puts them together as gluebox runs them: buildkitd idle until the first build,
//     the build metrics (Collector), every finished build's log shipped to a LogSink (the logs
//     store), and the API routes (Routes, in http.go).
//
// Lifecycle: NewService (or NewDaemon, NewBuilder and NewQueue on their own); the supervisor
// runs Service.Components: buildkitd waits for the first build, the queue dispatches builds
// until its context ends.
//
// Who may import it: the server wiring, the GitOps packages (follow submits builds, preview and
// engine read the Index) and the API/CLI layer (record types). It imports appliance/api,
// logs, registry and supervise and third-party modules.
package imagebuild
