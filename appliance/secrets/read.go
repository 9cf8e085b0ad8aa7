// Reads: a path at a version with its values opened, listings and kept history.

package secrets

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

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
