// The audit log: one entry per change, never a value, capped at KeepAudit entries.

package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
