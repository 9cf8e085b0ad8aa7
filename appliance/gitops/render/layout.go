package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Paths of the GlueOps deployment-configurations layout, relative to the repository root.
const (
	CommonValuesFile = "common/common-values.yaml"
	OverlaysDir      = "env-overlays"
	AppsDir          = "apps"
	// PreviewsEnv is the env folder that holds pull-request previews, which are not
	// environments of their own here (the builds issue renders them).
	PreviewsEnv = "previews"
	// ProdOverlay and NonProdOverlay are the overlay names OverlayFor falls back to.
	ProdOverlay    = "prod"
	NonProdOverlay = "nonprod"
)

func overlayFile(overlay string) string { return path.Join(OverlaysDir, overlay, "env-values.yaml") }
func baseFile(app string) string        { return path.Join(AppsDir, app, "base", "base-values.yaml") }
func envDir(app, env string) string     { return path.Join(AppsDir, app, "envs", env) }
func envFile(app, env string) string    { return path.Join(envDir(app, env), "values.yaml") }

// previewCommonFile and previewFile are the GlueOps values files of every preview of app and
// of pull request n's preview.
func previewCommonFile(app string) string {
	return path.Join(envDir(app, PreviewsEnv), "common", "values.yaml")
}
func previewFile(app string, n int) string {
	return path.Join(envDir(app, PreviewsEnv), "pull-request-number", strconv.Itoa(n), "values.yaml")
}

// previewEnvPrefix starts the env name of a pull-request preview.
const previewEnvPrefix = "pr-"

// PreviewEnv is the env name of the preview of pull request n: "pr-<n>". It names the
// namespace "<app>-pr-<n>" and so the default hostname "<app>-pr-<n>.<domain>".
func PreviewEnv(n int) string { return previewEnvPrefix + strconv.Itoa(n) }

// ParsePreviewEnv is the inverse of PreviewEnv: the pull-request number of an env name of the
// form "pr-<n>", n a positive decimal without leading zeros, and true; otherwise 0 and false.
func ParsePreviewEnv(env string) (int, bool) {
	digits, ok := strings.CutPrefix(env, previewEnvPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 || strconv.Itoa(n) != digits {
		return 0, false
	}
	return n, true
}

// Namespace is the namespace an app environment runs in: "<app>-<env>".
func Namespace(app, env string) string { return app + "-" + env }

// ValidateNames says what is wrong with an app and env name pair, if anything: each must be a
// DNS label (they name folders, the namespace and hostnames) and the namespace "<app>-<env>"
// must fit in 63 characters.
func ValidateNames(app, env string) error {
	for _, n := range []struct{ what, v string }{{"app", app}, {"env", env}} {
		if errs := validation.IsDNS1123Label(n.v); len(errs) > 0 {
			return &Error{Reason: fmt.Sprintf("%s name %q is invalid: %s", n.what, n.v, strings.Join(errs, "; "))}
		}
	}
	if env == PreviewsEnv {
		return &Error{Reason: fmt.Sprintf("env name %q is reserved for pull-request previews", env)}
	}
	if ns := Namespace(app, env); len(ns) > validation.DNS1123LabelMaxLength {
		return &Error{Reason: fmt.Sprintf("namespace %q is %d characters long, the limit is %d: use a shorter app or env name",
			ns, len(ns), validation.DNS1123LabelMaxLength)}
	}
	return nil
}

// Apps lists the app folders under apps/ in repo, sorted. Folders whose names are not DNS
// labels are skipped: they cannot name a namespace.
func Apps(repo fs.FS) ([]string, error) {
	return subdirs(repo, AppsDir)
}

// Envs lists the environments of app in repo, sorted: the folders under apps/<app>/envs/ other
// than "previews".
func Envs(repo fs.FS, app string) ([]string, error) {
	if errs := validation.IsDNS1123Label(app); len(errs) > 0 {
		return nil, &Error{Reason: fmt.Sprintf("app name %q is invalid: %s", app, strings.Join(errs, "; "))}
	}
	all, err := subdirs(repo, path.Join(AppsDir, app, "envs"))
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if e != PreviewsEnv {
			out = append(out, e)
		}
	}
	return out, nil
}

// AppEnv names one environment of one app.
type AppEnv struct {
	App string `json:"app"`
	Env string `json:"env"`
}

// List lists every app environment in repo, sorted by app then env. Environments whose
// namespace would be too long are listed too; Render reports them.
func List(repo fs.FS) ([]AppEnv, error) {
	apps, err := Apps(repo)
	if err != nil {
		return nil, err
	}
	var out []AppEnv
	for _, a := range apps {
		envs, err := Envs(repo, a)
		if err != nil {
			return nil, err
		}
		for _, e := range envs {
			out = append(out, AppEnv{App: a, Env: e})
		}
	}
	return out, nil
}

func subdirs(repo fs.FS, dir string) ([]string, error) {
	ents, err := fs.ReadDir(repo, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || len(validation.IsDNS1123Label(e.Name())) > 0 {
			continue
		}
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out, nil
}

func exists(repo fs.FS, name string) (bool, error) {
	_, err := fs.Stat(repo, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot stat %s: %w", name, err)
	}
	return true, nil
}

// OverlayFor chooses the env-overlay of env in repo:
//
//  1. env-overlays/<env>/env-values.yaml if it exists (so "prod" uses "prod", and any env may
//     have an overlay of its own);
//  2. otherwise, for every env but "prod", env-overlays/nonprod/env-values.yaml if it exists;
//  3. otherwise none ("").
func OverlayFor(repo fs.FS, env string) (string, error) {
	ok, err := exists(repo, overlayFile(env))
	if err != nil {
		return "", err
	}
	if ok {
		return env, nil
	}
	if env == ProdOverlay {
		return "", nil
	}
	ok, err = exists(repo, overlayFile(NonProdOverlay))
	if err != nil || !ok {
		return "", err
	}
	return NonProdOverlay, nil
}

func validationLabel(s string) string {
	return strings.Join(validation.IsDNS1123Label(s), "; ")
}

// OpenRepo opens a checked-out repository directory for Render. Unlike os.DirFS, the file
// system it returns refuses symbolic links that lead outside dir, so a repository cannot make
// gluebox read other files of the host. Call close when done.
func OpenRepo(dir string) (repo fs.FS, close func() error, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot open repository %s: %w", dir, err)
	}
	return root.FS(), root.Close, nil
}
