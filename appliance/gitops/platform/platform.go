// Package platform reads platform.yaml, the file at the root of the deployment-configurations
// repository that lists the application source repositories and the environments:
//
//	apps:
//	  - name: app-antoniostacos
//	    repo: https://git.example.com/acme/app-antoniostacos.git
//	    dockerfile: Dockerfile
//	    context: .
//	    branches: [main]
//	    previews: true
//	    credentials: secret/git/acme
//	environments:
//	  prod: {cluster: local}
//
// It owns the file's schema and its checks; unknown keys and bad values are errors naming the
// line and key. A missing platform.yaml is an empty Platform (an app folder alone deploys).
// Pure functions, plus the Publisher that hands each synced platform.yaml from the GitOps engine
// to its subscribers (the app follower, the alerting rules). The GitOps packages and the server
// wiring import it.
package platform

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// File is platform.yaml's name at the repository root.
const File = "platform.yaml"

// MaxSize bounds platform.yaml; a larger file is refused rather than parsed.
const MaxSize = 1 << 20

// Platform is platform.yaml.
type Platform struct {
	Apps         []App                  `yaml:"apps"`
	Environments map[string]Environment `yaml:"environments"`
	// Alerts are user alert rules; appliance/alerts reads and checks them (from Raw).
	Alerts yaml.Node `yaml:"alerts"`
	// Raw is the file's content, for readers of sections this package does not own.
	Raw []byte `yaml:"-"`
}

// App is one application source repository.
type App struct {
	// Name is the folder under apps/ (a DNS label).
	Name string `yaml:"name"`
	// Repo is https://, ssh://, scp-like or a local path.
	Repo string `yaml:"repo"`
	// Dockerfile defaults to "Dockerfile"; Context to ".".
	Dockerfile string `yaml:"dockerfile"`
	Context    string `yaml:"context"`
	// BuildArgs are passed to the Dockerfile's ARGs.
	BuildArgs map[string]string `yaml:"buildArgs"`
	// Branches build; empty means the default branch.
	Branches []string `yaml:"branches"`
	// Previews defaults to true.
	Previews *bool `yaml:"previews"`
	// Credentials is a secret-store path ("secret/...") or "".
	Credentials string `yaml:"credentials"`
	// Status, when set, reports builds as commit statuses (with the preview URL for pull
	// requests) through the forge's API, with the credentials' token. Off by default.
	Status *CommitStatus `yaml:"status"`
}

// CommitStatus says where builds are reported.
type CommitStatus struct {
	// Provider is github, gitea, forgejo or gitlab.
	Provider string `yaml:"provider"`
	// API is the forge's API base URL; empty means https://api.github.com for github and
	// https://<repo host>/api/v1 (gitea, forgejo) or /api/v4 (gitlab) for the others.
	API string `yaml:"api"`
}

// StatusProviders are the forges whose commit-status API gluebox speaks.
var StatusProviders = []string{"github", "gitea", "forgejo", "gitlab"}

// Environment says where an environment runs.
type Environment struct {
	// Cluster is "local" (default) or the name of a joined cluster.
	Cluster string `yaml:"cluster"`
}

// PreviewsEnabled reports whether the app gets preview environments (default true).
func (a App) PreviewsEnabled() bool { return a.Previews == nil || *a.Previews }

// Read reads platform.yaml from the repository root; a missing file is an empty Platform.
func Read(repo fs.FS) (*Platform, error) {
	f, err := repo.Open(File)
	if errors.Is(err, fs.ErrNotExist) {
		return &Platform{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %w", File, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", File, err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: split it or remove unused entries", File, MaxSize)
	}
	return Parse(data)
}

// Parse decodes and checks platform.yaml's content.
func Parse(data []byte) (*Platform, error) {
	p := &Platform{Raw: data}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %s", File, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc)
	var errs []error
	seen := map[string]bool{}
	for i, a := range p.Apps {
		where := fmt.Sprintf("%s:%d: apps[%d]", File, appLine(&doc, i), i)
		if msgs := validation.IsDNS1123Label(a.Name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s.name %q: %s (it is the folder under apps/)", where, a.Name, strings.Join(msgs, "; ")))
		} else if seen[a.Name] {
			errs = append(errs, fmt.Errorf("%s.name %q is listed twice", where, a.Name))
		}
		seen[a.Name] = true
		if strings.TrimSpace(a.Repo) == "" {
			errs = append(errs, fmt.Errorf("%s.repo is empty: set the app's Git URL", where))
		}
		if a.Credentials != "" && !strings.HasPrefix(a.Credentials, "secret/") {
			errs = append(errs, fmt.Errorf("%s.credentials %q is not a secret-store path: use secret/<name>", where, a.Credentials))
		}
		for _, f := range []struct{ key, val string }{{"dockerfile", a.Dockerfile}, {"context", a.Context}} {
			if f.val != "" && (path.IsAbs(f.val) || strings.HasPrefix(path.Clean(f.val), "..")) {
				errs = append(errs, fmt.Errorf("%s.%s %q must be a path inside the repository", where, f.key, f.val))
			}
		}
		if st := a.Status; st != nil {
			if !slices.Contains(StatusProviders, st.Provider) {
				errs = append(errs, fmt.Errorf("%s.status.provider %q is not one of %s", where, st.Provider, strings.Join(StatusProviders, ", ")))
			}
			if st.API != "" {
				if u, err := url.Parse(st.API); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
					errs = append(errs, fmt.Errorf("%s.status.api %q is not an http(s) URL", where, st.API))
				}
			}
			if a.Credentials == "" {
				errs = append(errs, fmt.Errorf("%s.status needs credentials with a token (credentials: secret/...)", where))
			}
		}
		for _, b := range a.Branches {
			if b == "" || strings.ContainsAny(b, " ~^:?*[\\") || strings.Contains(b, "..") {
				errs = append(errs, fmt.Errorf("%s.branches: %q is not a valid branch name", where, b))
			}
		}
	}
	for name, env := range p.Environments {
		if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s: environments.%s: %s", File, name, strings.Join(msgs, "; ")))
		}
		if env.Cluster != "" && env.Cluster != "local" {
			errs = append(errs, fmt.Errorf("%s: environments.%s.cluster %q: only \"local\" exists until clusters are joined", File, name, env.Cluster))
		}
	}
	return p, errors.Join(errs...)
}

// App returns the entry for name and whether there is one.
func (p *Platform) App(name string) (App, bool) {
	for _, a := range p.Apps {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}

// appLine finds the line of apps[i] in doc, or 0.
func appLine(doc *yaml.Node, i int) int {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return 0
	}
	m := doc.Content[0]
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == "apps" && m.Content[k+1].Kind == yaml.SequenceNode && i < len(m.Content[k+1].Content) {
			return m.Content[k+1].Content[i].Line
		}
	}
	return 0
}
