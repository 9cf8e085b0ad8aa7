package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// GCOptions select what one garbage collection keeps.
type GCOptions struct {
	// KeepLast is how many of the newest top-level manifests (images and indexes, not their
	// children or referrers) each repository keeps. Zero means Config.KeepLast; negative keeps only
	// the Keep set.
	KeepLast int `json:"keepLast,omitempty"`
	// Keep lists digests that survive in every repository holding them, whatever their age
	// (images currently deployed).
	Keep []digest.Digest `json:"keep,omitempty"`
	// DryRun reports what would be deleted without deleting anything.
	DryRun bool `json:"dryRun,omitempty"`
}

// Report is what one garbage collection did.
type Report struct {
	Started          time.Time `json:"started"`
	Duration         string    `json:"duration"`
	DryRun           bool      `json:"dryRun,omitempty"`
	Repositories     int       `json:"repositories"`
	ManifestsDeleted int       `json:"manifestsDeleted"`
	TagsDeleted      int       `json:"tagsDeleted"`
	BlobsDeleted     int       `json:"blobsDeleted"`
	BytesFreed       int64     `json:"bytesFreed"`
	BlobsKept        int       `json:"blobsKept"`
	// BlobsTooYoung counts unreferenced blobs spared because they are younger than the grace
	// period (an upload whose manifest may still come).
	BlobsTooYoung int `json:"blobsTooYoung"`
	// Deleted lists deleted manifests as repo@digest.
	Deleted []string `json:"deleted,omitempty"`
}

// manifestInfo is one stored manifest as GC and listing see it.
type manifestInfo struct {
	digest   digest.Digest
	size     int64
	pushSeq  uint64    // gluebox's push number (pushOrder); 0 for manifests pushed before it
	pushed   time.Time // the revision link's mtime: the order among manifests without a number
	fields   manifestFields
	children []digest.Digest // index entries
	blobs    []v1.Descriptor // config, layers, blobs
}

// GC deletes manifests outside the retention policy and then reclaims blobs no manifest
// references.
//
// Readers never stop: the retention phase deletes manifests one by one exactly as a client's
// DELETE would, and the sweep deletes only unreferenced blobs. Writers are paused only during mark
// and sweep: manifest PUTs, upload completions, mounts and deletes wait for the sweep to finish
// (data PATCHes keep streaming), because a manifest accepted during the sweep could reference a
// blob the mark phase did not see. Blobs younger than Config.GCGrace are spared, so a push that
// has uploaded its layers but not yet its manifest survives.
func (r *Registry) GC(ctx context.Context, opts GCOptions) (Report, error) {
	r.gcMu.Lock()
	defer r.gcMu.Unlock()
	rep := Report{Started: time.Now().UTC(), DryRun: opts.DryRun}
	keepLast := r.cfg.keepLast()
	if opts.KeepLast > 0 {
		keepLast = opts.KeepLast
	} else if opts.KeepLast < 0 {
		keepLast = 0
	}
	keep := map[digest.Digest]bool{}
	for _, d := range opts.Keep {
		keep[d] = true
	}

	doomed := map[string]bool{} // repo@digest deleted (or, in a dry run, to be deleted)
	err := r.retain(ctx, keepLast, keep, doomed, &rep)
	if err == nil {
		err = r.markAndSweep(ctx, doomed, &rep)
	}
	rep.Duration = time.Since(rep.Started).Round(time.Millisecond).String()
	if err != nil {
		r.metrics.gcRuns.WithLabelValues("error").Inc()
		r.log.Warn("gc failed", "err", err)
		return rep, fmt.Errorf("cannot garbage-collect registry: %w", err)
	}
	r.metrics.gcRuns.WithLabelValues("ok").Inc()
	if !opts.DryRun {
		r.metrics.gcFreed.Add(float64(rep.BytesFreed))
		r.metrics.gcLast.SetToCurrentTime()
	}
	r.mu.Lock()
	r.lastGC = &rep
	r.mu.Unlock()
	r.log.Info("gc done", "dry_run", opts.DryRun, "manifests_deleted", rep.ManifestsDeleted, "tags_deleted", rep.TagsDeleted,
		"blobs_deleted", rep.BlobsDeleted, "bytes_freed", rep.BytesFreed, "blobs_too_young", rep.BlobsTooYoung, "took", rep.Duration)
	return rep, nil
}

// repositories lists every repository name.
func (r *Registry) repositories(ctx context.Context) ([]string, error) {
	var names []string
	err := r.namespace.(distribution.RepositoryEnumerator).Enumerate(ctx, func(name string) error {
		names = append(names, name)
		return nil
	})
	var pnf driver.PathNotFoundError
	if errors.As(err, &pnf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list repositories: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// manifests reads every manifest of repo with its push time.
func (r *Registry) manifests(ctx context.Context, repo distribution.Repository) (map[digest.Digest]*manifestInfo, error) {
	ms, err := repo.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest]*manifestInfo{}
	err = ms.(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
		if d.Algorithm() != digest.Canonical {
			return nil // an alias revision of a sha256 manifest, which is enumerated itself
		}
		b, err := readManifest(ctx, repo, d)
		if err != nil {
			return nil // a dangling revision link; nothing to keep or mark
		}
		mi := &manifestInfo{digest: d, size: int64(len(b))}
		var raw struct {
			manifestFields
			Layers    []v1.Descriptor `json:"layers"`
			Blobs     []v1.Descriptor `json:"blobs"`
			Manifests []v1.Descriptor `json:"manifests"`
		}
		_ = json.Unmarshal(b, &raw)
		mi.fields = raw.manifestFields
		if raw.Config != nil {
			mi.blobs = append(mi.blobs, *raw.Config)
		}
		mi.blobs = append(mi.blobs, raw.Layers...)
		mi.blobs = append(mi.blobs, raw.Blobs...)
		for _, c := range raw.Manifests {
			mi.children = append(mi.children, c.Digest)
		}
		link := fmt.Sprintf("/docker/registry/v2/repositories/%s/_manifests/revisions/%s/%s/link", repo.Named().Name(), d.Algorithm(), d.Encoded())
		if fi, err := r.driver.Stat(ctx, link); err == nil {
			mi.pushed = fi.ModTime()
		}
		mi.pushSeq = r.pushes.get(repo.Named().Name(), d)
		out[d] = mi
		return nil
	})
	var pnf driver.PathNotFoundError
	if err != nil && !errors.As(err, &pnf) {
		return nil, err
	}
	return out, nil
}

func (r *Registry) repository(ctx context.Context, name string) (distribution.Repository, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return nil, fmt.Errorf("cannot parse repository name %q: %w", name, err)
	}
	return r.namespace.Repository(ctx, named)
}

// retain deletes, per repository, the manifests outside the newest keepLast top-level ones and
// the keep set; children of kept indexes and referrers of kept manifests are kept with them.
func (r *Registry) retain(ctx context.Context, keepLast int, keep map[digest.Digest]bool, doomedSet map[string]bool, rep *Report) error {
	names, err := r.repositories(ctx)
	if err != nil {
		return err
	}
	rep.Repositories = len(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		repo, err := r.repository(ctx, name)
		if err != nil {
			return err
		}
		all, err := r.manifests(ctx, repo)
		if err != nil {
			return fmt.Errorf("cannot read manifests of %s: %w", name, err)
		}
		isChild := map[digest.Digest]bool{}
		referrersOf := map[digest.Digest][]digest.Digest{}
		for _, m := range all {
			for _, c := range m.children {
				isChild[c] = true
			}
			if m.fields.Subject != nil {
				referrersOf[m.fields.Subject.Digest] = append(referrersOf[m.fields.Subject.Digest], m.digest)
			}
		}
		var roots []*manifestInfo
		for _, m := range all {
			if !isChild[m.digest] && m.fields.Subject == nil {
				roots = append(roots, m)
			}
		}
		sort.Slice(roots, func(i, j int) bool {
			if roots[i].pushSeq != roots[j].pushSeq {
				return roots[i].pushSeq > roots[j].pushSeq
			}
			if !roots[i].pushed.Equal(roots[j].pushed) {
				return roots[i].pushed.After(roots[j].pushed)
			}
			return roots[i].digest > roots[j].digest
		})
		kept := map[digest.Digest]bool{}
		var visit func(d digest.Digest)
		visit = func(d digest.Digest) {
			if kept[d] {
				return
			}
			kept[d] = true
			if m := all[d]; m != nil {
				for _, c := range m.children {
					visit(c)
				}
			}
			for _, ref := range referrersOf[d] {
				visit(ref)
			}
		}
		for i, m := range roots {
			if i < keepLast || keep[m.digest] {
				visit(m.digest)
			}
		}
		for d := range all {
			if keep[d] {
				visit(d)
			}
		}

		var doomed []digest.Digest
		for d := range all {
			if !kept[d] {
				doomed = append(doomed, d)
			}
		}
		if len(doomed) == 0 {
			continue
		}
		sort.Slice(doomed, func(i, j int) bool { return doomed[i] < doomed[j] })
		tags := repo.Tags(ctx)
		tagNames, err := tags.All(ctx)
		if err != nil {
			var unknown distribution.ErrRepositoryUnknown
			if !errors.As(err, &unknown) {
				return fmt.Errorf("cannot list tags of %s: %w", name, err)
			}
		}
		tagOf := map[digest.Digest][]string{}
		for _, t := range tagNames {
			if d, err := tags.Get(ctx, t); err == nil {
				tagOf[d.Digest] = append(tagOf[d.Digest], t)
			}
		}
		ms, err := repo.Manifests(ctx)
		if err != nil {
			return err
		}
		for _, d := range doomed {
			rep.Deleted = append(rep.Deleted, name+"@"+d.String())
			doomedSet[name+"@"+d.String()] = true
			rep.ManifestsDeleted++
			rep.TagsDeleted += len(tagOf[d])
			if rep.DryRun {
				continue
			}
			for _, t := range tagOf[d] {
				if err := tags.Untag(ctx, t); err != nil {
					return fmt.Errorf("cannot delete tag %s:%s: %w", name, t, err)
				}
			}
			if err := ms.Delete(ctx, d); err != nil {
				return fmt.Errorf("cannot delete manifest %s@%s: %w", name, d, err)
			}
			if err := r.pushes.remove(name, d); err != nil {
				return err
			}
			if s := all[d].fields.Subject; s != nil {
				if err := r.referrers.remove(name, s.Digest, d); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// markAndSweep deletes blobs that no manifest of any repository references, holding the write
// gate so no manifest can start referencing a blob between mark and sweep.
func (r *Registry) markAndSweep(ctx context.Context, doomed map[string]bool, rep *Report) error {
	r.writes.Lock()
	defer r.writes.Unlock()
	cutoff := time.Now().Add(-r.cfg.gcGrace())

	marked := map[digest.Digest]bool{}
	names, err := r.repositories(ctx)
	if err != nil {
		return err
	}
	links := map[string][]digest.Digest{}
	for _, name := range names {
		repo, err := r.repository(ctx, name)
		if err != nil {
			return err
		}
		all, err := r.manifests(ctx, repo)
		if err != nil {
			return fmt.Errorf("cannot read manifests of %s: %w", name, err)
		}
		for d, m := range all {
			if doomed[name+"@"+d.String()] {
				continue // still there in a dry run
			}
			marked[d] = true
			for _, b := range m.blobs {
				marked[b.Digest] = true
				if b.Digest.Algorithm() != digest.Canonical && b.Digest.Validate() == nil {
					// Stored under its sha256 digest; the repository link says which.
					link := fmt.Sprintf("/docker/registry/v2/repositories/%s/_layers/%s/%s/link", name, b.Digest.Algorithm(), b.Digest.Encoded())
					if target, err := r.driver.GetContent(ctx, link); err == nil {
						if c, err := digest.Parse(strings.TrimSpace(string(target))); err == nil {
							marked[c] = true
						}
					}
				}
			}
		}
		// Remember the repository's layer links to drop the ones whose blob goes away.
		err = repo.Blobs(ctx).(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
			links[name] = append(links[name], d)
			return nil
		})
		var pnf driver.PathNotFoundError
		if err != nil && !errors.As(err, &pnf) {
			return fmt.Errorf("cannot list layer links of %s: %w", name, err)
		}
	}

	var victims []digest.Digest
	gone := map[digest.Digest]bool{}
	err = r.namespace.Blobs().Enumerate(ctx, func(d digest.Digest) error {
		if marked[d] {
			rep.BlobsKept++
			return nil
		}
		fi, err := r.driver.Stat(ctx, blobDataPath(d))
		if err != nil {
			return nil
		}
		if fi.ModTime().After(cutoff) {
			rep.BlobsTooYoung++
			return nil
		}
		victims = append(victims, d)
		rep.BytesFreed += fi.Size()
		return nil
	})
	var pnf driver.PathNotFoundError
	if err != nil && !errors.As(err, &pnf) {
		return fmt.Errorf("cannot list blobs: %w", err)
	}
	rep.BlobsDeleted = len(victims)
	if rep.DryRun {
		return nil
	}
	vac := storage.NewVacuum(ctx, r.driver)
	for _, d := range victims {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := vac.RemoveBlob(d.String()); err != nil {
			return fmt.Errorf("cannot delete blob %s: %w", d, err)
		}
		gone[d] = true
	}
	for name, ds := range links {
		for _, d := range ds {
			if gone[d] {
				if err := vac.RemoveLayer(name, d); err != nil {
					var pnf driver.PathNotFoundError
					if !errors.As(err, &pnf) {
						return fmt.Errorf("cannot delete layer link %s@%s: %w", name, d, err)
					}
				}
			}
		}
	}
	return nil
}

func blobDataPath(d digest.Digest) string {
	enc := d.Encoded()
	return fmt.Sprintf("/docker/registry/v2/blobs/%s/%s/%s/data", d.Algorithm(), enc[:2], enc)
}

// gateWrites makes the requests that commit something (manifest PUT, upload completion, mount,
// delete) share the write gate GC's sweep holds exclusively. Reads and upload PATCHes never wait.
func (r *Registry) gateWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodPut, http.MethodPost, http.MethodDelete:
			r.writes.RLock()
			defer r.writes.RUnlock()
		}
		next.ServeHTTP(w, req)
	})
}

// TagInfo is one tag of a repository.
type TagInfo struct {
	Name   string        `json:"name"`
	Digest digest.Digest `json:"digest"`
	// Size is the manifest plus every blob it references (for an index, its children's too).
	Size int64 `json:"size"`
}

// RepoInfo is one repository as `gluebox registry list` shows it.
type RepoInfo struct {
	Name      string    `json:"name"`
	Tags      []TagInfo `json:"tags"`
	Manifests int       `json:"manifests"`
	// Size counts every distinct blob and manifest the repository's manifests reference once.
	Size int64 `json:"size"`
}

// List returns every repository with its tags and sizes.
func (r *Registry) List(ctx context.Context) ([]RepoInfo, error) {
	names, err := r.repositories(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RepoInfo, 0, len(names))
	for _, name := range names {
		repo, err := r.repository(ctx, name)
		if err != nil {
			return nil, err
		}
		all, err := r.manifests(ctx, repo)
		if err != nil {
			return nil, fmt.Errorf("cannot read manifests of %s: %w", name, err)
		}
		info := RepoInfo{Name: name, Manifests: len(all), Tags: []TagInfo{}}
		seen := map[digest.Digest]bool{}
		for d, m := range all {
			if !seen[d] {
				seen[d] = true
				info.Size += m.size
			}
			for _, b := range m.blobs {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					info.Size += b.Size
				}
			}
		}
		tags := repo.Tags(ctx)
		tagNames, _ := tags.All(ctx)
		sort.Strings(tagNames)
		for _, t := range tagNames {
			d, err := tags.Get(ctx, t)
			if err != nil {
				continue
			}
			info.Tags = append(info.Tags, TagInfo{Name: t, Digest: d.Digest, Size: imageSize(all, d.Digest, map[digest.Digest]bool{})})
		}
		out = append(out, info)
	}
	return out, nil
}

func imageSize(all map[digest.Digest]*manifestInfo, d digest.Digest, seen map[digest.Digest]bool) int64 {
	m := all[d]
	if m == nil || seen[d] {
		return 0
	}
	seen[d] = true
	n := m.size
	for _, b := range m.blobs {
		if !seen[b.Digest] {
			seen[b.Digest] = true
			n += b.Size
		}
	}
	for _, c := range m.children {
		n += imageSize(all, c, seen)
	}
	return n
}

// Status is the registry's line in `gluebox status`.
type Status struct {
	Addr         string  `json:"addr"`
	Ready        bool    `json:"ready"`
	TLS          bool    `json:"tls"`
	AuthRequired bool    `json:"authRequired"`
	StorageBytes int64   `json:"storageBytes"`
	Repositories int     `json:"repositories"`
	LastGC       *Report `json:"lastGC,omitempty"`
}

// Status reports address, storage use, repository count and the last GC.
func (r *Registry) Status(ctx context.Context) (Status, error) {
	st := Status{Addr: r.Addr(), TLS: r.cfg.TLSCertFile != "", AuthRequired: r.cfg.authRequired(), StorageBytes: r.storageBytes()}
	st.Ready = r.ready.IsSet()
	names, err := r.repositories(ctx)
	if err != nil {
		return st, err
	}
	st.Repositories = len(names)
	r.mu.Lock()
	st.LastGC = r.lastGC
	r.mu.Unlock()
	return st, nil
}

// storageBytes is dirSize of the storage root, cached for a minute: status calls and metric
// scrapes should not each walk every blob.
func (r *Registry) storageBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.sizeAt) > time.Minute {
		r.size, r.sizeAt = dirSize(r.cfg.Dir), time.Now()
	}
	return r.size
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
