package registry

// Host is the name the cluster pulls the built-in registry's images by: containerd mirrors it
// to the registry's address, buildkitd pushes through it, and the renderer writes it into
// images that name no registry. It never resolves in DNS; only those mirrors know it.
const Host = "registry.gluebox.local"
