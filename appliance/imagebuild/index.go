package imagebuild

// Image is the newest successful build of one (app, key): what an environment that follows
// that branch (or a preview, key "pr-<n>") runs.
type Image struct {
	// Digest is the pushed manifest's digest ("sha256:…").
	Digest string `json:"digest"`
	// Commit is the commit that build was of; Build its id.
	Commit string `json:"commit,omitempty"`
	Build  string `json:"build"`
}

// Index is the queue's image index: (app, branch or "pr-<n>") → newest successful build. It
// reads the queue's records, so it survives restarts as they do, and it is safe for
// concurrent use. The GitOps engine and the preview store read it; nothing writes it but the
// queue finishing builds.
type Index struct{ q *Queue }

// Index returns the queue's image index.
func (q *Queue) Index() *Index { return &Index{q: q} }

// Latest returns the newest successful build of (app, key). known reports whether the queue
// holds any build of that key (queued, running or finished): the key is built by gluebox,
// so an environment that follows it waits for a successful build rather than running the
// tag as it is written.
func (ix *Index) Latest(app, key string) (img Image, known bool) {
	q := ix.q
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := len(q.records) - 1; i >= 0; i-- {
		r := q.records[i]
		if r.App != app || r.Branch != key {
			continue
		}
		known = true
		if r.Status == StatusSucceeded && r.Digest != "" {
			return Image{Digest: r.Digest, Commit: r.Commit, Build: r.ID}, true
		}
	}
	return Image{}, known
}
