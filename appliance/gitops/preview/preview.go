// Package preview owns the preview records: every open pull request of an app repository that
// builds previews becomes a Preview, environment "pr-<n>" of its app. Records are discovered
// by the app follower (appliance/gitops/follow) from webhook pull-request events, from
// refs/pull/<n>/head and refs/merge-requests/<n>/head when polling, and from branches matching
// Config.Branches; they go away when the pull request is closed or merged (webhook), its ref
// disappears (poll), its app stops building previews, or it has not moved for Config.TTL.
// List hands the GitOps engine the previews to deploy, each with the digest of its newest
// successful build (from the build queue's image index), so an environment never waits on a
// missing image.
//
// It owns <dir>/previews.json. It knows nothing of Git hosting (the follower reads refs) or
// Kubernetes (the engine deploys).
//
// Lifecycle: New loads the records; every method may be called at any time after, from any
// goroutine. Importers: the follower (writes), the engine (reads) and the server wiring.
package preview

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/imagebuild"
)

// DefaultTTL is Config.TTL's default.
const DefaultTTL = 7 * 24 * time.Hour

// Config configures the preview store. Dir is required.
type Config struct {
	// Dir holds previews.json. Normally <data-dir>/gitops/builds.
	Dir string
	// Branches is a pattern of branch names that are previews, with one "*" at the end
	// standing for the pull-request number: "preview/*" makes branch preview/7 the preview
	// pr-7. Empty means branches never make previews (pull-request refs and webhooks do).
	Branches string
	// TTL removes a preview whose head has not moved for this long, so a missed close event
	// does not keep it forever. Zero means 7 days; negative means never.
	TTL time.Duration
	// Now is the clock of Opened, Updated and the TTL. Nil means time.Now.
	Now func() time.Time
}

// Validate reports unusable settings.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("previews: config: Dir is required"))
	}
	if p := c.Branches; p != "" {
		prefix, ok := strings.CutSuffix(p, "*")
		if !ok || prefix == "" || strings.ContainsAny(prefix, "*?[\\ ") {
			errs = append(errs, fmt.Errorf("previews: config: preview-branches %q must be a branch prefix followed by one \"*\" for the pull-request number, e.g. \"preview/*\"", p))
		}
	}
	return errors.Join(errs...)
}

// Images is what the store needs of the build queue's image index (imagebuild.Index).
type Images interface {
	Latest(app, key string) (img imagebuild.Image, known bool)
}

var _ Images = (*imagebuild.Index)(nil)

// Preview is one pull request's preview environment.
type Preview struct {
	App    string `json:"app"`
	Number int64  `json:"number"`
	// Commit is the pull request's head commit; Branch its source branch, when known.
	Commit string `json:"commit"`
	Branch string `json:"branch,omitempty"`
	// Via says how it was discovered: "webhook", "ref" (refs/pull/<n>/head) or "branch".
	Via     string    `json:"via"`
	Opened  time.Time `json:"opened"`
	Updated time.Time `json:"updated"`
	// Digest is the image of its newest successful build; empty until a build succeeded.
	// BuiltCommit is the commit that build was of.
	Digest      string `json:"digest,omitempty"`
	BuiltCommit string `json:"builtCommit,omitempty"`
}

// Env is the preview's environment name, "pr-<n>", which is also the branch name its builds
// are recorded under.
func (p Preview) Env() string { return render.PreviewEnv(int(p.Number)) }

// Store holds the preview records. See the package doc.
type Store struct {
	cfg    Config
	images Images
	log    *slog.Logger

	mu       sync.Mutex
	previews map[string]*Preview // by app/number
	// seen are the review refs present when an app was first polled (app/number → SHA):
	// forges keep refs/pull/<n>/head after a pull request closes, so refs that were there
	// before gluebox followed the app make previews only once they move.
	seen map[string]string
	// closed are previews that ended (app/number → head SHA then): their refs stay on the
	// forge, and must not bring them back unless they move.
	closed map[string]string
	polled map[string]bool
}

// New loads the records in cfg.Dir.
func New(cfg Config, images Images, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if images == nil {
		return nil, errors.New("previews: the build queue's image index is required")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("previews: cannot create %s: %w", cfg.Dir, err)
	}
	s := &Store{
		cfg: cfg, images: images, log: log.With("component", "previews"),
		previews: map[string]*Preview{}, seen: map[string]string{}, closed: map[string]string{}, polled: map[string]bool{},
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Branches is the preview-branch pattern (Config.Branches).
func (s *Store) Branches() string { return s.cfg.Branches }

// file is the records' file.
func (s *Store) file() string { return filepath.Join(s.cfg.Dir, "previews.json") }

type recordsJSON struct {
	Previews []*Preview        `json:"previews"`
	Seen     map[string]string `json:"seen,omitempty"`
	Closed   map[string]string `json:"closed,omitempty"`
	Polled   []string          `json:"polled,omitempty"`
}

func (s *Store) load() error {
	b, err := os.ReadFile(s.file())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("previews: cannot read preview records: %w", err)
	}
	var r recordsJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("previews: %s is corrupt (%v): move it away to start with no previews; they are found again from the repositories", s.file(), err)
	}
	for _, p := range r.Previews {
		s.previews[key(p.App, p.Number)] = p
	}
	for k, v := range r.Seen {
		s.seen[k] = v
	}
	for k, v := range r.Closed {
		s.closed[k] = v
	}
	for _, a := range r.Polled {
		s.polled[a] = true
	}
	return nil
}

// saveLocked writes the records atomically. s.mu must be held.
func (s *Store) saveLocked() {
	r := recordsJSON{Seen: s.seen, Closed: s.closed}
	for _, p := range s.previews {
		r.Previews = append(r.Previews, p)
	}
	sort.Slice(r.Previews, func(i, j int) bool {
		return key(r.Previews[i].App, r.Previews[i].Number) < key(r.Previews[j].App, r.Previews[j].Number)
	})
	for a := range s.polled {
		r.Polled = append(r.Polled, a)
	}
	sort.Strings(r.Polled)
	b, err := json.MarshalIndent(r, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(s.file(), b, 0o600)
	}
	if err != nil {
		s.log.Error("cannot save preview records", "err", err)
	}
}

func key(app string, n int64) string { return app + "/" + strconv.FormatInt(n, 10) }

// List returns the open previews, sorted by app and number, with the digest of their newest
// successful build. built keeps only those that have one: what the engine deploys.
func (s *Store) List(built bool) []Preview {
	s.mu.Lock()
	ps := make([]Preview, 0, len(s.previews))
	for _, p := range s.previews {
		ps = append(ps, *p)
	}
	s.mu.Unlock()
	out := ps[:0]
	for _, p := range ps {
		if img, _ := s.images.Latest(p.App, p.Env()); img.Digest != "" {
			p.Digest, p.BuiltCommit = img.Digest, img.Commit
		}
		if built && p.Digest == "" {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Number < out[j].Number
	})
	return out
}

// Of returns app's open previews, without digests, in no particular order.
func (s *Store) Of(app string) []Preview {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Preview
	for _, p := range s.previews {
		if p.App == app {
			out = append(out, *p)
		}
	}
	return out
}
