package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"filippo.io/age"
	bolt "go.etcd.io/bbolt"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// Rotation steps, in order. A crash after any of them leaves a store that Open reads: before
// "resealed" the staged identity is discarded, after it the file moves are finished.
const (
	stepStaged   = "staged"   // new identity written to identity.new
	stepReseal   = "reseal"   // inside the re-seal transaction, before commit
	stepResealed = "resealed" // transaction committed: the store is sealed to the new identity
	stepRetired  = "retired"  // old identity copied under retired/
	stepRenamed  = "renamed"  // identity.new renamed over identity
)

var rotateSteps = []string{stepStaged, stepReseal, stepResealed, stepRetired, stepRenamed}

func (s *Store) hook(step string) error {
	if s.crashHook == nil {
		return nil
	}
	return s.crashHook(step)
}

// RotateKey re-seals every value (every kept version, and the canary) under a freshly generated
// identity in one bbolt transaction, then replaces the identity file. The old identity is kept
// under retired/ so existing backups stay restorable. It returns the new public key.
func (s *Store) RotateKey(ctx context.Context, by string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return "", fmt.Errorf("cannot rotate key: secret store is closed")
	}
	old, oldDEK := s.keys.current, s.keys.dek
	next, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("cannot generate identity: %w", err)
	}
	nextDEK, err := newDataKey()
	if err != nil {
		return "", err
	}
	stPath := filepath.Join(s.opts.Dir, stagingFile)
	if err := s.codec.write(stPath, next); err != nil {
		return "", fmt.Errorf("cannot stage new identity: %w", err)
	}
	if err := s.hook(stepStaged); err != nil {
		return "", err
	}
	var n int
	var hookErr error
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if n, err = resealTx(tx, oldDEK, nextDEK, next); err != nil {
			return err
		}
		if err := s.appendAudit(tx, nil, AuditEntry{By: by, Op: "rotate-key", Detail: fmt.Sprintf("%s -> %s", old.Recipient(), next.Recipient())}); err != nil {
			return err
		}
		hookErr = s.hook(stepReseal)
		return hookErr
	})
	if hookErr != nil {
		return "", hookErr
	}
	if err != nil {
		_ = os.Remove(stPath)
		return "", fmt.Errorf("cannot re-seal store under new identity (nothing changed): %w", err)
	}
	if err := s.hook(stepResealed); err != nil {
		return "", err
	}
	// From here the store needs the new identity. If a step fails, Open finishes the job.
	if err := s.codec.retire(s.opts.Dir, old); err != nil {
		return "", fmt.Errorf("cannot keep old identity (the next start finishes the rotation): %w", err)
	}
	if err := s.hook(stepRetired); err != nil {
		return "", err
	}
	if err := os.Rename(stPath, filepath.Join(s.opts.Dir, identityFile)); err != nil {
		return "", fmt.Errorf("cannot install new identity (the next start finishes the rotation): %w", err)
	}
	if err := atomicfile.SyncDir(s.opts.Dir); err != nil {
		return "", err
	}
	if err := s.hook(stepRenamed); err != nil {
		return "", err
	}
	s.keys = &keyring{current: next, dek: nextDEK, retired: append([]*age.X25519Identity{old}, s.keys.retired...)}
	s.log.Info("rotated secret store identity", "values", n, "recipient", next.Recipient().String(), "by", by)
	return next.Recipient().String(), nil
}

// resealTx opens every sealed value in the store with the data key from and seals it to the data
// key to, which it stores sealed to the identity id; the canary follows. Values shared between
// versions are re-sealed once.
func resealTx(tx *bolt.Tx, from, to *dataKey, id *age.X25519Identity) (int, error) {
	cache := map[[32]byte][]byte{}
	rcpt := to
	n := 0
	vbs := tx.Bucket(bVersions)
	var paths [][]byte
	if err := vbs.ForEach(func(k, v []byte) error {
		if v == nil {
			paths = append(paths, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, p := range paths {
		vb := vbs.Bucket(p)
		type kv struct{ k, v []byte }
		var recs []kv
		if err := vb.ForEach(func(k, v []byte) error {
			recs = append(recs, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		}); err != nil {
			return 0, err
		}
		for _, r := range recs {
			var rec versionRec
			if err := json.Unmarshal(r.v, &rec); err != nil {
				return 0, fmt.Errorf("cannot decode %s version: %w", p, err)
			}
			for k, sv := range rec.Sealed {
				h := sha256.Sum256(sv)
				if ns, ok := cache[h]; ok {
					rec.Sealed[k] = ns
					continue
				}
				plain, err := open(sv, from)
				if err != nil {
					return 0, fmt.Errorf("cannot open %s version %d key %s: %w", p, rec.Version, k, err)
				}
				ns, err := seal(rcpt, plain)
				if err != nil {
					return 0, err
				}
				cache[h] = ns
				rec.Sealed[k] = ns
				n++
			}
			if err := putJSON(vb, r.k, rec); err != nil {
				return 0, err
			}
		}
	}
	canary, err := seal(rcpt, []byte(canaryText))
	if err != nil {
		return 0, err
	}
	sealedDEK, err := sealDEK(to, id.Recipient())
	if err != nil {
		return 0, err
	}
	m := tx.Bucket(bMeta)
	if err := m.Put(kRecipient, []byte(id.Recipient().String())); err != nil {
		return 0, err
	}
	if err := m.Put(kDEK, sealedDEK); err != nil {
		return 0, err
	}
	return n, m.Put(kCanary, canary)
}
