// Writes: each one seals its values outside any lock, then adds a new version of the path in
// the writer. Old versions beyond KeepVersions are dropped.

package secrets

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

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
		return slices.Sorted(maps.Keys(sealed)), nil
	})
}

// Import stores values under path as one new version; with replace, keys not in values are
// removed, otherwise they are kept.
func (s *Store) Import(ctx context.Context, path string, values map[string][]byte, replace bool, by string) (uint64, error) {
	if err := validateValues(path, values); err != nil {
		return 0, err
	}
	return s.writeSealed(ctx, path, values, by, "import", func(cur, sealed map[string][]byte) ([]string, error) {
		changed := slices.Sorted(maps.Keys(sealed))
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
	meta.Updated, meta.By, meta.Keys = now, by, slices.Sorted(maps.Keys(cur))
	if meta.Keys == nil {
		meta.Keys = []string{} // a path whose last key was deleted lists "keys": [], not null
	}
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
