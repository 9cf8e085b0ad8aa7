// Opening and closing the store: the bbolt file, its meta bucket and the identity that
// unseals it, including finishing a key rotation that a crash interrupted.

package secrets

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

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
