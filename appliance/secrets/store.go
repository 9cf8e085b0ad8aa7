package secrets

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// Bucket names. Paths and key names are plaintext; every value is an age file.
var (
	bMeta     = []byte("meta")     // format, recipient, canary
	bPaths    = []byte("paths")    // path -> pathMeta (JSON)
	bVersions = []byte("versions") // path -> bucket of version (uint64 BE) -> versionRec (JSON)
	bAudit    = []byte("audit")    // sequence (uint64 BE) -> AuditEntry (JSON)

	kFormat    = []byte("format")
	kRecipient = []byte("recipient")
	kCanary    = []byte("canary")
	kDEK       = []byte("dek")
)

const (
	storeFormat   = "1"
	canaryText    = "gluebox secret store canary"
	maxBatch      = 512
	defaultAudits = 100_000
)

// errStaleKey means a value was sealed to a data key that rotate-key replaced meanwhile.
var errStaleKey = errors.New("identity rotated while writing")

// StoreOptions configure Open. The zero value is not usable: Dir is required.
type StoreOptions struct {
	// Dir is the secrets dir (paths.Layout.SecretsDir()); it holds store.db and the identity file.
	Dir string
	// Passphrase, when set, seals the identity file with age's scrypt recipient; empty leaves the
	// identity file as plain text protected only by its 0600 mode.
	Passphrase string
	// ScryptWorkFactor is log2 of scrypt's N for the passphrase; 0 means age's default (18).
	ScryptWorkFactor int
	// KeepVersions is how many versions of each path are kept; 0 means 10.
	KeepVersions int
	// LockTimeout is how long Open waits for another process to release store.db; 0 means 2s.
	LockTimeout time.Duration
	// KeepAudit is how many audit entries are kept; 0 means 100,000.
	KeepAudit int
}

func (o *StoreOptions) defaults() error {
	if o.Dir == "" {
		return inputErrorf("secret store dir is not set: pass the data dir's secrets dir (paths.Layout.SecretsDir())")
	}
	if o.KeepVersions < 0 || o.KeepAudit < 0 || o.LockTimeout < 0 || o.ScryptWorkFactor < 0 || o.ScryptWorkFactor > 30 {
		return inputErrorf("secret store options: KeepVersions, KeepAudit, LockTimeout must not be negative and ScryptWorkFactor must be 0..30")
	}
	if o.KeepVersions == 0 {
		o.KeepVersions = 10
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.KeepAudit == 0 {
		o.KeepAudit = defaultAudits
	}
	return nil
}

// Store is the encrypted secret store. Its methods are safe for concurrent use.
type Store struct {
	opts  StoreOptions
	log   *slog.Logger
	codec identityCodec

	mu   sync.RWMutex // writers: rotate-key, restore, Close; readers: everything else
	db   *bolt.DB
	keys *keyring

	writes    chan *writeReq
	closed    chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}

	subsMu sync.Mutex
	subs   map[*Subscription]struct{}

	// crashHook, set by tests only, is called at each step of rotate-key; an error stops the
	// rotation right there, as a crash would.
	crashHook func(step string) error
}

// Secret is one path at one version with its opened values.
type Secret struct {
	Path    string            `json:"path"`
	Version uint64            `json:"version"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
	By      string            `json:"by"`
	Values  map[string][]byte `json:"-"`
}

// PathInfo describes a path without its values.
type PathInfo struct {
	Path    string    `json:"path"`
	Version uint64    `json:"version"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
	Keys    []string  `json:"keys"`
}

// VersionInfo describes one kept version of a path.
type VersionInfo struct {
	Version uint64    `json:"version"`
	Time    time.Time `json:"time"`
	By      string    `json:"by"`
	Op      string    `json:"op"`
	Keys    []string  `json:"keys"`
	Changed []string  `json:"changed,omitempty"`
}

// AuditEntry records one change. It never holds a value.
type AuditEntry struct {
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	By      string    `json:"by"`
	Op      string    `json:"op"`
	Path    string    `json:"path,omitempty"`
	Keys    []string  `json:"keys,omitempty"`
	Version uint64    `json:"version,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

type pathMeta struct {
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
	Version uint64    `json:"version"`
	Keys    []string  `json:"keys"`
}

type versionRec struct {
	VersionInfo
	Sealed map[string][]byte `json:"sealed"`
}

type writeReq struct {
	ctx       context.Context
	recipient string // identity the values were sealed to; "" when nothing was sealed
	fn        func(tx *bolt.Tx, w *writeReq) error
	done      chan error
	changed   []string
	audit     []AuditEntry
}

// Open opens (or creates) the store in opts.Dir. A store held by another process, a corrupt file,
// a missing or wrong identity are clear errors, and nothing on disk is changed in those cases.
func Open(opts StoreOptions, logger *slog.Logger) (*Store, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create secrets dir %s: %w", opts.Dir, err)
	}
	s := &Store{
		opts:     opts,
		log:      logger,
		codec:    identityCodec{passphrase: opts.Passphrase, workFactor: opts.ScryptWorkFactor},
		writes:   make(chan *writeReq, maxBatch),
		closed:   make(chan struct{}),
		loopDone: make(chan struct{}),
		subs:     map[*Subscription]struct{}{},
	}
	db, keys, err := s.openFiles()
	if err != nil {
		return nil, err
	}
	s.db, s.keys = db, keys
	// We hold the bbolt lock now, so scratch left by a crashed verify, restore or atomic write
	// belongs to nobody.
	for _, pat := range []string{".verify-*", ".restore-*", ".*.tmp-*"} {
		leftovers, _ := filepath.Glob(filepath.Join(opts.Dir, pat))
		for _, p := range leftovers {
			_ = os.RemoveAll(p)
		}
	}
	go s.commitLoop()
	return s, nil
}

// DBPath is the bbolt file.
func (s *Store) DBPath() string { return filepath.Join(s.opts.Dir, storeFile) }

// IdentityPath is the age identity file; losing it makes the store unreadable.
func (s *Store) IdentityPath() string { return filepath.Join(s.opts.Dir, identityFile) }

// Recipient is the public key every value is currently sealed to.
func (s *Store) Recipient() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.keys.recipient()
}

func (s *Store) openFiles() (*bolt.DB, *keyring, error) {
	db, err := openBolt(s.DBPath(), s.opts.LockTimeout, false)
	if err != nil {
		return nil, nil, err
	}
	recipient, sealedDEK, canary, err := readMeta(db)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("cannot read secret store %s (the file is corrupt; it was left untouched: restore a backup with `gluebox backup restore`): %w", s.DBPath(), err)
	}
	keys, err := s.loadKeyring(recipient)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	if recipient == "" {
		if keys.dek, err = initMeta(db, keys.current); err != nil {
			db.Close()
			return nil, nil, err
		}
		s.log.Info("created secret store", "file", s.DBPath(), "identity", s.IdentityPath(), "recipient", keys.recipient())
		return db, keys, nil
	}
	if keys.dek, err = openDEK(sealedDEK, keys.current); err == nil {
		_, err = open(canary, keys.dek)
	}
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("cannot open secret store %s with identity %s: %w", s.DBPath(), s.IdentityPath(), err)
	}
	return db, keys, nil
}

// openBolt opens a bbolt file, turning bbolt's errors into ones an operator can act on.
func openBolt(path string, timeout time.Duration, readOnly bool) (db *bolt.DB, err error) {
	defer func() {
		// bbolt panics on some damaged pages instead of returning an error.
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("cannot open secret store %s: the file is corrupt (it was left untouched; restore a backup with `gluebox backup restore`): %v", path, r)
		}
	}()
	// NoFreelistSync saves a page write per commit; Open rebuilds the freelist by a scan.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("cannot open secret store %s: another process holds its lock (is another `gluebox server` running with the same data dir?): %w", path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("cannot open secret store %s: the file is corrupt (it was left untouched; restore a backup with `gluebox backup restore`): %w", path, err)
	default:
		return nil, fmt.Errorf("cannot open secret store %s (if the file is damaged it was left untouched; restore a backup with `gluebox backup restore`): %w", path, err)
	}
}

// readMeta reads the recipient and canary; a panic from bbolt on a damaged page becomes an error.
func readMeta(db *bolt.DB) (recipient string, dek, canary []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged page: %v", r)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if m == nil {
			if tx.Bucket(bPaths) != nil {
				return errors.New("meta bucket is missing")
			}
			return nil
		}
		if f := string(m.Get(kFormat)); f != storeFormat {
			return fmt.Errorf("unknown store format %q (this gluebox reads format %s)", f, storeFormat)
		}
		recipient = string(m.Get(kRecipient))
		canary = append([]byte(nil), m.Get(kCanary)...)
		dek = append([]byte(nil), m.Get(kDEK)...)
		if recipient == "" || len(canary) == 0 || len(dek) == 0 {
			return errors.New("meta bucket has no recipient, data key or canary")
		}
		return nil
	})
	return recipient, dek, canary, err
}

func initMeta(db *bolt.DB, id *age.X25519Identity) (*dataKey, error) {
	dek, err := newDataKey()
	if err != nil {
		return nil, err
	}
	sealedDEK, err := sealDEK(dek, id.Recipient())
	if err != nil {
		return nil, err
	}
	canary, err := seal(dek, []byte(canaryText))
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bPaths, bVersions, bAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if err := m.Put(kFormat, []byte(storeFormat)); err != nil {
			return err
		}
		if err := m.Put(kRecipient, []byte(id.Recipient().String())); err != nil {
			return err
		}
		if err := m.Put(kDEK, sealedDEK); err != nil {
			return err
		}
		return m.Put(kCanary, canary)
	})
	if err != nil {
		return nil, fmt.Errorf("cannot initialise secret store: %w", err)
	}
	return dek, nil
}

// loadKeyring loads the identity that matches the store (dbRecipient, "" for a new store),
// finishing or discarding a rotate-key that a crash interrupted.
func (s *Store) loadKeyring(dbRecipient string) (*keyring, error) {
	idPath := filepath.Join(s.opts.Dir, identityFile)
	stPath := filepath.Join(s.opts.Dir, stagingFile)
	cur, err := s.codec.load(idPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cannot load secret store identity: %w", err)
	}
	staged, err := s.codec.load(stPath)
	switch {
	case err == nil:
		if dbRecipient != "" && staged.Recipient().String() == dbRecipient {
			// The re-seal transaction committed; only the file moves are missing.
			if cur != nil && cur.Recipient().String() != dbRecipient {
				if err := s.codec.retire(s.opts.Dir, cur); err != nil {
					return nil, fmt.Errorf("cannot finish interrupted key rotation: %w", err)
				}
			}
			if err := os.Rename(stPath, idPath); err != nil {
				return nil, fmt.Errorf("cannot finish interrupted key rotation: %w", err)
			}
			if err := atomicfile.SyncDir(s.opts.Dir); err != nil {
				return nil, err
			}
			cur = staged
			s.log.Warn("finished an interrupted key rotation", "recipient", dbRecipient)
		} else {
			// The rotation never reached the store: its new identity sealed nothing.
			if err := os.Remove(stPath); err != nil {
				return nil, fmt.Errorf("cannot discard interrupted key rotation: %w", err)
			}
			s.log.Warn("discarded an interrupted key rotation; the store keeps its identity", "recipient", dbRecipient)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("cannot load staged identity of an interrupted key rotation: %w", err)
	}
	if cur == nil {
		if dbRecipient != "" {
			return nil, fmt.Errorf("cannot open secret store %s: its identity file %s is missing; the store is sealed for %s and cannot be read without that identity: put the identity file back (from your off-host copy)", s.DBPath(), idPath, dbRecipient)
		}
		if cur, err = age.GenerateX25519Identity(); err != nil {
			return nil, fmt.Errorf("cannot generate identity: %w", err)
		}
		if err := s.codec.write(idPath, cur); err != nil {
			return nil, fmt.Errorf("cannot write identity: %w", err)
		}
	}
	retired, err := s.codec.loadRetired(s.opts.Dir)
	if err != nil {
		return nil, err
	}
	if dbRecipient != "" && cur.Recipient().String() != dbRecipient {
		return nil, fmt.Errorf("cannot open secret store %s: identity file %s (public key %s) does not belong to this store, which is sealed for %s: put back the identity file of this store; without it the values cannot be recovered", s.DBPath(), idPath, cur.Recipient(), dbRecipient)
	}
	return &keyring{current: cur, retired: retired}, nil
}

// Close stops the writer and closes the bbolt file. It is safe to call more than once.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		<-s.loopDone
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.db != nil {
			err = s.db.Close()
			s.db = nil
		}
		s.subsMu.Lock()
		for sub := range s.subs {
			close(sub.c)
			delete(s.subs, sub)
		}
		s.subsMu.Unlock()
	})
	return err
}

// commitLoop is the single writer: it takes every request that is waiting and commits them in
// one transaction (one fsync), so concurrent writers share the cost of a commit.
func (s *Store) commitLoop() {
	defer close(s.loopDone)
	for {
		var first *writeReq
		select {
		case <-s.closed:
			for {
				select {
				case r := <-s.writes:
					r.done <- errors.New("secret store is closed")
				default:
					return
				}
			}
		case first = <-s.writes:
		}
		batch := []*writeReq{first}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

var errBatchMember = errors.New("a request in the batch failed")

func (s *Store) commit(batch []*writeReq) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	run := func(tx *bolt.Tx, r *writeReq) error {
		r.changed, r.audit = nil, nil
		if r.recipient != "" && r.recipient != s.keys.sealID() {
			return errStaleKey
		}
		return r.fn(tx, r)
	}
	var failed error
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range live {
			if err := run(tx, r); err != nil {
				failed = err
				return errBatchMember
			}
		}
		return nil
	})
	if err == nil {
		for _, r := range live {
			s.finish(r, nil)
		}
		return
	}
	if len(live) == 1 {
		if errors.Is(err, errBatchMember) {
			err = failed
		}
		s.finish(live[0], err)
		return
	}
	// Something failed: run each request in its own transaction so one bad request does not
	// fail the others.
	for _, r := range live {
		var rerr error
		err := s.db.Update(func(tx *bolt.Tx) error {
			rerr = run(tx, r)
			return rerr
		})
		if rerr != nil {
			err = rerr
		}
		s.finish(r, err)
	}
}

func (s *Store) finish(r *writeReq, err error) {
	if err == nil {
		for _, a := range r.audit {
			s.log.Info("secret changed", "op", a.Op, "path", a.Path, "keys", a.Keys, "version", a.Version, "by", a.By)
		}
		s.notify(r.changed, false)
	}
	r.done <- err
}

func (s *Store) submit(ctx context.Context, recipient string, fn func(tx *bolt.Tx, w *writeReq) error) error {
	r := &writeReq{ctx: ctx, recipient: recipient, fn: fn, done: make(chan error, 1)}
	select {
	case <-s.closed:
		return errors.New("secret store is closed")
	case s.writes <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-s.loopDone:
		// The writer stopped; it may still have answered just before.
		select {
		case err := <-r.done:
			return err
		default:
			return errors.New("secret store is closed")
		}
	}
}

// sealAll seals values to the current identity, outside any lock, so concurrent writers seal in
// parallel.
func (s *Store) sealAll(values map[string][]byte) (map[string][]byte, string, error) {
	s.mu.RLock()
	if s.keys == nil {
		s.mu.RUnlock()
		return nil, "", errors.New("secret store is closed")
	}
	rcpt := s.keys.dek
	s.mu.RUnlock()
	out := make(map[string][]byte, len(values))
	for k, v := range values {
		sv, err := seal(rcpt, v)
		if err != nil {
			return nil, "", err
		}
		out[k] = sv
	}
	return out, rcpt.id, nil
}

// writeSealed seals values and applies mutate to the path's newest version in the writer.
func (s *Store) writeSealed(ctx context.Context, path string, values map[string][]byte, by, op string, mutate func(cur, sealed map[string][]byte) ([]string, error)) (uint64, error) {
	for attempt := 0; ; attempt++ {
		sealed, rcpt, err := s.sealAll(values)
		if err != nil {
			return 0, err
		}
		var version uint64
		err = s.submit(ctx, rcpt, func(tx *bolt.Tx, w *writeReq) error {
			v, err := s.newVersion(tx, w, path, by, op, func(cur map[string][]byte) ([]string, error) { return mutate(cur, sealed) })
			version = v
			return err
		})
		if errors.Is(err, errStaleKey) && attempt < 3 {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("cannot %s %s: %w", op, path, err)
		}
		return version, nil
	}
}

// Set stores values under path as one new version; keys not named keep their values.
func (s *Store) Set(ctx context.Context, path string, values map[string][]byte, by string) (uint64, error) {
	if err := validateValues(path, values); err != nil {
		return 0, err
	}
	return s.writeSealed(ctx, path, values, by, "set", func(cur, sealed map[string][]byte) ([]string, error) {
		for k, v := range sealed {
			cur[k] = v
		}
		return sortedKeys(sealed), nil
	})
}

// Import stores values under path as one new version; with replace, keys not in values are
// removed, otherwise they are kept.
func (s *Store) Import(ctx context.Context, path string, values map[string][]byte, replace bool, by string) (uint64, error) {
	if err := validateValues(path, values); err != nil {
		return 0, err
	}
	return s.writeSealed(ctx, path, values, by, "import", func(cur, sealed map[string][]byte) ([]string, error) {
		changed := sortedKeys(sealed)
		if replace {
			for k := range cur {
				if _, ok := sealed[k]; !ok {
					changed = append(changed, k)
					delete(cur, k)
				}
			}
			sort.Strings(changed)
		}
		for k, v := range sealed {
			cur[k] = v
		}
		return changed, nil
	})
}

// DeleteKeys removes keys from path as one new version.
func (s *Store) DeleteKeys(ctx context.Context, path string, keys []string, by string) (uint64, error) {
	if err := ValidatePath(path); err != nil {
		return 0, err
	}
	if len(keys) == 0 {
		return 0, inputErrorf("no keys given to delete from %s: name at least one key, or delete the whole path", path)
	}
	for _, k := range keys {
		if err := ValidateKey(path, k); err != nil {
			return 0, err
		}
	}
	var version uint64
	err := s.submit(ctx, "", func(tx *bolt.Tx, w *writeReq) error {
		if tx.Bucket(bPaths).Get([]byte(path)) == nil {
			return fmt.Errorf("secret path %s: %w", path, ErrNotFound)
		}
		v, err := s.newVersion(tx, w, path, by, "delete-keys", func(cur map[string][]byte) ([]string, error) {
			for _, k := range keys {
				if _, ok := cur[k]; !ok {
					return nil, fmt.Errorf("key %s in %s: %w", k, path, ErrNotFound)
				}
				delete(cur, k)
			}
			return keys, nil
		})
		version = v
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cannot delete keys of %s: %w", path, err)
	}
	return version, nil
}

// DeletePath removes path with all its versions.
func (s *Store) DeletePath(ctx context.Context, path, by string) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	err := s.submit(ctx, "", func(tx *bolt.Tx, w *writeReq) error {
		if tx.Bucket(bPaths).Get([]byte(path)) == nil {
			return fmt.Errorf("secret path %s: %w", path, ErrNotFound)
		}
		if err := tx.Bucket(bPaths).Delete([]byte(path)); err != nil {
			return err
		}
		if err := tx.Bucket(bVersions).DeleteBucket([]byte(path)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
			return err
		}
		w.changed = append(w.changed, path)
		return s.appendAudit(tx, w, AuditEntry{By: by, Op: "delete", Path: path})
	})
	if err != nil {
		return fmt.Errorf("cannot delete %s: %w", path, err)
	}
	return nil
}

// Rollback makes a copy of an older kept version the newest version of path.
func (s *Store) Rollback(ctx context.Context, path string, version uint64, by string) (uint64, error) {
	if err := ValidatePath(path); err != nil {
		return 0, err
	}
	var newV uint64
	err := s.submit(ctx, "", func(tx *bolt.Tx, w *writeReq) error {
		vb := tx.Bucket(bVersions).Bucket([]byte(path))
		if vb == nil {
			return fmt.Errorf("secret path %s: %w", path, ErrNotFound)
		}
		old, err := getVersion(vb, version)
		if err != nil {
			return fmt.Errorf("version %d of %s is not kept (kept: %s): %w", version, path, keptRange(vb), ErrNotFound)
		}
		v, err := s.newVersion(tx, w, path, by, fmt.Sprintf("rollback to %d", version), func(cur map[string][]byte) ([]string, error) {
			var changed []string
			for k := range cur {
				if _, ok := old.Sealed[k]; !ok {
					changed = append(changed, k)
				}
				delete(cur, k)
			}
			for k, v := range old.Sealed {
				cur[k] = v
				changed = append(changed, k)
			}
			sort.Strings(changed)
			return changed, nil
		})
		newV = v
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("cannot roll back %s: %w", path, err)
	}
	return newV, nil
}

// newVersion writes the next version of path: mutate edits a copy of the newest version's
// sealed values and says which keys changed. Older versions beyond KeepVersions are dropped.
func (s *Store) newVersion(tx *bolt.Tx, w *writeReq, path, by, op string, mutate func(cur map[string][]byte) ([]string, error)) (uint64, error) {
	now := time.Now().UTC()
	pb := tx.Bucket(bPaths)
	vb, err := tx.Bucket(bVersions).CreateBucketIfNotExists([]byte(path))
	if err != nil {
		return 0, err
	}
	var meta pathMeta
	cur := map[string][]byte{}
	if raw := pb.Get([]byte(path)); raw != nil {
		if err := json.Unmarshal(raw, &meta); err != nil {
			return 0, fmt.Errorf("cannot decode metadata of %s: %w", path, err)
		}
		rec, err := getVersion(vb, meta.Version)
		if err != nil {
			return 0, fmt.Errorf("cannot read newest version of %s: %w", path, err)
		}
		for k, v := range rec.Sealed {
			cur[k] = v
		}
	} else {
		meta.Created = now
	}
	changed, err := mutate(cur)
	if err != nil {
		return 0, err
	}
	meta.Version++
	meta.Updated, meta.By, meta.Keys = now, by, sortedKeys(cur)
	rec := versionRec{
		VersionInfo: VersionInfo{Version: meta.Version, Time: now, By: by, Op: op, Keys: meta.Keys, Changed: changed},
		Sealed:      cur,
	}
	if err := putJSON(vb, u64(meta.Version), rec); err != nil {
		return 0, err
	}
	if err := putJSON(pb, []byte(path), meta); err != nil {
		return 0, err
	}
	if meta.Version > uint64(s.opts.KeepVersions) {
		limit := meta.Version - uint64(s.opts.KeepVersions)
		c := vb.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= limit; k, _ = c.First() {
			if err := vb.Delete(k); err != nil {
				return 0, err
			}
		}
	}
	w.changed = append(w.changed, path)
	return meta.Version, s.appendAudit(tx, w, AuditEntry{By: by, Op: op, Path: path, Keys: changed, Version: meta.Version})
}

func (s *Store) appendAudit(tx *bolt.Tx, w *writeReq, e AuditEntry) error {
	ab := tx.Bucket(bAudit)
	seq, err := ab.NextSequence()
	if err != nil {
		return err
	}
	e.Seq, e.Time = seq, time.Now().UTC()
	if err := putJSON(ab, u64(seq), e); err != nil {
		return err
	}
	if seq > uint64(s.opts.KeepAudit) {
		if err := ab.Delete(u64(seq - uint64(s.opts.KeepAudit))); err != nil {
			return err
		}
	}
	if w != nil {
		w.audit = append(w.audit, e)
	}
	return nil
}

// Get returns path at version (0 means the newest) with its values opened.
func (s *Store) Get(ctx context.Context, path string, version uint64) (*Secret, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, errors.New("secret store is closed")
	}
	var meta pathMeta
	var rec versionRec
	err := s.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bPaths).Get([]byte(path))
		if raw == nil {
			return fmt.Errorf("secret path %s: %w", path, ErrNotFound)
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return err
		}
		if version == 0 {
			version = meta.Version
		}
		vb := tx.Bucket(bVersions).Bucket([]byte(path))
		var err error
		if rec, err = getVersion(vb, version); err != nil {
			return fmt.Errorf("version %d of %s is not kept (kept: %s): %w", version, path, keptRange(vb), ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot get %s: %w", path, err)
	}
	out := &Secret{Path: path, Version: rec.Version, Created: meta.Created, Updated: rec.Time, By: rec.By, Values: map[string][]byte{}}
	for k, sv := range rec.Sealed {
		v, err := open(sv, s.keys.dek)
		if err != nil {
			return nil, fmt.Errorf("cannot open %s key %s: %w", path, k, err)
		}
		out.Values[k] = v
	}
	return out, nil
}

// Values returns the newest values of path; kubesync uses it.
func (s *Store) Values(ctx context.Context, path string) (map[string][]byte, error) {
	sec, err := s.Get(ctx, path, 0)
	if err != nil {
		return nil, err
	}
	return sec.Values, nil
}

// List returns every path that starts with prefix ("" for all), sorted.
func (s *Store) List(ctx context.Context, prefix string) ([]PathInfo, error) {
	var out []PathInfo
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bPaths).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			var m pathMeta
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("cannot decode metadata of %s: %w", k, err)
			}
			out = append(out, PathInfo{Path: string(k), Version: m.Version, Created: m.Created, Updated: m.Updated, By: m.By, Keys: m.Keys})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot list secrets: %w", err)
	}
	return out, nil
}

// Count is the number of paths in the store.
func (s *Store) Count() (int, error) {
	n := 0
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bPaths).Stats().KeyN
		return nil
	})
	return n, err
}

// History returns the kept versions of path, newest first.
func (s *Store) History(ctx context.Context, path string) ([]VersionInfo, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	var out []VersionInfo
	err := s.view(func(tx *bolt.Tx) error {
		vb := tx.Bucket(bVersions).Bucket([]byte(path))
		if vb == nil {
			return fmt.Errorf("secret path %s: %w", path, ErrNotFound)
		}
		c := vb.Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var rec versionRec
			if err := json.Unmarshal(v, &rec); err != nil {
				return err
			}
			out = append(out, rec.VersionInfo)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read history of %s: %w", path, err)
	}
	return out, nil
}

// Audit returns up to limit audit entries, newest first (limit 0 means 100).
func (s *Store) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []AuditEntry
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read audit log: %w", err)
	}
	return out, nil
}

func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errors.New("secret store is closed")
	}
	return s.db.View(fn)
}

func getVersion(vb *bolt.Bucket, v uint64) (versionRec, error) {
	var rec versionRec
	if vb == nil {
		return rec, ErrNotFound
	}
	raw := vb.Get(u64(v))
	if raw == nil {
		return rec, ErrNotFound
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, fmt.Errorf("cannot decode version %d: %w", v, err)
	}
	return rec, nil
}

func keptRange(vb *bolt.Bucket) string {
	if vb == nil {
		return "none"
	}
	c := vb.Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	if first == nil {
		return "none"
	}
	return fmt.Sprintf("%d..%d", binary.BigEndian.Uint64(first), binary.BigEndian.Uint64(last))
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Subscription tells one consumer which paths changed. Changes are coalesced, so a slow
// consumer never blocks writers and never misses that something changed.
type Subscription struct {
	s     *Store
	c     chan struct{}
	mu    sync.Mutex
	paths map[string]struct{}
	all   bool
}

// Subscribe returns a Subscription; call Close when done.
func (s *Store) Subscribe() *Subscription {
	sub := &Subscription{s: s, c: make(chan struct{}, 1), paths: map[string]struct{}{}}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	select {
	case <-s.closed:
		close(sub.c)
	default:
		s.subs[sub] = struct{}{}
	}
	return sub
}

// C receives a value when there are changes to Take; it is closed when the store closes.
func (sub *Subscription) C() <-chan struct{} { return sub.c }

// Take returns the paths changed since the last Take; all reports that everything may have
// changed (a restore).
func (sub *Subscription) Take() (paths []string, all bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	paths, all = sortedKeys(sub.paths), sub.all
	sub.paths, sub.all = map[string]struct{}{}, false
	return paths, all
}

// Close stops the subscription.
func (sub *Subscription) Close() {
	sub.s.subsMu.Lock()
	defer sub.s.subsMu.Unlock()
	if _, ok := sub.s.subs[sub]; ok {
		delete(sub.s.subs, sub)
		close(sub.c)
	}
}

func (s *Store) notify(paths []string, all bool) {
	if len(paths) == 0 && !all {
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for sub := range s.subs {
		sub.mu.Lock()
		for _, p := range paths {
			sub.paths[p] = struct{}{}
		}
		sub.all = sub.all || all
		sub.mu.Unlock()
		select {
		case sub.c <- struct{}{}:
		default:
		}
	}
}
