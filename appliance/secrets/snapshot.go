package secrets

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	bolt "go.etcd.io/bbolt"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// A snapshot file is one age file (sealed to the store's identity) whose plaintext is:
//
//	snapshotMagic
//	one line of JSON: snapshotHeader
//	Size bytes: the bbolt file as written by Tx.WriteTo
//	32 bytes: SHA-256 of those Size bytes
//
// Next to it, <file>.json is its Manifest with the SHA-256 of the sealed file, so truncation or
// tampering is found before decryption; age's authenticated encryption finds it again.
const (
	snapshotMagic   = "gluebox-secrets-snapshot/v1\n"
	snapshotPrefix  = "secrets-"
	snapshotSuffix  = ".snap.age"
	manifestSuffix  = ".json"
	maxHeaderLine   = 4096
	maxSnapshotSize = 1 << 40
)

type snapshotHeader struct {
	Created   time.Time `json:"created"`
	Recipient string    `json:"recipient"`
	Size      int64     `json:"size"`
	Secrets   int       `json:"secrets"`
}

// Manifest describes one backup file; it is written next to it as <file>.json.
type Manifest struct {
	File      string    `json:"file"`
	Created   time.Time `json:"created"`
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	Recipient string    `json:"recipient"`
	Secrets   int       `json:"secrets"`
	// Verified is when Verify last opened every value of this backup; zero if never.
	Verified time.Time `json:"verified,omitzero"`
}

// VerifyReport is what Verify found in a backup.
type VerifyReport struct {
	File      string    `json:"file"`
	Created   time.Time `json:"created"`
	Recipient string    `json:"recipient"`
	Secrets   int       `json:"secrets"`
	Values    int       `json:"values"`
	Manifest  bool      `json:"manifest"`
}

// CopyTarget is where finished backups may also be copied, such as an S3-compatible bucket. It is
// the seam for an off-host copy; gluebox has no implementation yet.
type CopyTarget interface {
	// Put stores the content of r (size bytes) under name; it must not keep a partial object.
	Put(ctx context.Context, name string, r io.Reader, size int64) error
}

// Backup writes a consistent snapshot of the store, sealed to its identity, into dir, with its
// manifest, and returns the manifest.
func (s *Store) Backup(ctx context.Context, dir string) (Manifest, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Manifest{}, fmt.Errorf("cannot create backups dir %s: %w", dir, err)
	}
	now := time.Now().UTC()
	name := snapshotPrefix + now.Format("20060102T150405.000000000Z") + snapshotSuffix
	final := filepath.Join(dir, name)
	outer := sha256.New()
	var cw *countWriter
	var hdr snapshotHeader
	errClosed := errors.New("cannot back up: secret store is closed")
	err := atomicfile.Write(final, 0o600, func(f io.Writer) error {
		cw = &countWriter{w: io.MultiWriter(f, outer)}
		bw := bufio.NewWriterSize(cw, 1<<20)
		if err := s.snapshotTo(bw, now, &hdr, errClosed); err != nil {
			return err
		}
		return bw.Flush()
	})
	if errors.Is(err, errClosed) {
		return Manifest{}, errClosed
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("cannot write snapshot: %w", err)
	}
	m := Manifest{File: name, Created: now, Size: cw.n, SHA256: hex.EncodeToString(outer.Sum(nil)), Recipient: hdr.Recipient, Secrets: hdr.Secrets}
	if err := writeManifest(final, m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// snapshotTo encrypts a consistent snapshot of the store to its current identity into w and
// fills in hdr, holding the read lock only while the transaction lasts.
func (s *Store) snapshotTo(w io.Writer, now time.Time, hdr *snapshotHeader, errClosed error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errClosed
	}
	rcpt := s.keys.current.Recipient()
	return s.db.View(func(tx *bolt.Tx) error {
		aw, err := age.Encrypt(w, rcpt)
		if err != nil {
			return err
		}
		*hdr = snapshotHeader{Created: now, Recipient: rcpt.String(), Size: tx.Size(), Secrets: tx.Bucket(bPaths).Stats().KeyN}
		if err := writeSnapshot(aw, *hdr, tx); err != nil {
			return err
		}
		return aw.Close()
	})
}

func writeSnapshot(w io.Writer, hdr snapshotHeader, tx *bolt.Tx) error {
	line, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, snapshotMagic); err != nil {
		return err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return err
	}
	h := sha256.New()
	n, err := tx.WriteTo(io.MultiWriter(w, h))
	if err != nil {
		return err
	}
	if n != hdr.Size {
		return fmt.Errorf("snapshot wrote %d bytes, expected %d", n, hdr.Size)
	}
	_, err = w.Write(h.Sum(nil))
	return err
}

// readSnapshot parses the plaintext of a snapshot from r, copying the bbolt file to dst. It
// checks the framing and the inner checksum, and that nothing follows.
func readSnapshot(r io.Reader, dst io.Writer) (snapshotHeader, error) {
	var hdr snapshotHeader
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return hdr, errors.New("not a gluebox secret store snapshot (bad magic)")
	}
	var line []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return hdr, fmt.Errorf("snapshot header is cut short: %w", err)
		}
		if b == '\n' {
			break
		}
		if len(line) >= maxHeaderLine {
			return hdr, errors.New("snapshot header is too long")
		}
		line = append(line, b)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hdr); err != nil {
		return hdr, fmt.Errorf("cannot decode snapshot header: %w", err)
	}
	if hdr.Size <= 0 || hdr.Size > maxSnapshotSize {
		return hdr, fmt.Errorf("snapshot header has an impossible size %d", hdr.Size)
	}
	if hdr.Recipient == "" {
		return hdr, errors.New("snapshot header names no recipient")
	}
	h := sha256.New()
	if n, err := io.CopyN(io.MultiWriter(dst, h), br, hdr.Size); err != nil {
		return hdr, fmt.Errorf("snapshot is truncated: %d of %d bytes: %w", n, hdr.Size, err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, sum); err != nil {
		return hdr, fmt.Errorf("snapshot is truncated: no checksum: %w", err)
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return hdr, errors.New("snapshot checksum does not match its content")
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		return hdr, errors.New("snapshot has trailing data after its checksum")
	}
	return hdr, nil
}

// unpackSnapshot checks file against its manifest (if there is one), decrypts it with the
// store's identities and writes the bbolt file to dst, then checks that file with
// checkStoreFile. It touches nothing else.
func (s *Store) unpackSnapshot(file, dst string) (VerifyReport, error) {
	rep := VerifyReport{File: file}
	s.mu.RLock()
	keys := s.keys
	s.mu.RUnlock()
	if keys == nil {
		return rep, errors.New("secret store is closed")
	}
	m, err := readManifest(file)
	switch {
	case err == nil:
		rep.Manifest = true
		if err := checkFileSum(file, m); err != nil {
			return rep, err
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return rep, err
	}
	f, err := os.Open(file)
	if err != nil {
		return rep, fmt.Errorf("cannot open backup: %w", err)
	}
	defer f.Close()
	ar, err := age.Decrypt(bufio.NewReaderSize(f, 1<<20), keys.all()...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return rep, fmt.Errorf("backup %s was sealed for a different identity: it is not a backup of this store (or needs an identity this host no longer has)", file)
		}
		return rep, fmt.Errorf("backup %s is not a readable age file (corrupt or not a backup): %w", file, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return rep, fmt.Errorf("cannot create scratch file: %w", err)
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	hdr, err := readSnapshot(ar, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("backup %s is damaged: %w", file, err)
	}
	rep.Created, rep.Recipient, rep.Secrets = hdr.Created, hdr.Recipient, hdr.Secrets
	id := keys.find(hdr.Recipient)
	if id == nil {
		return rep, fmt.Errorf("backup %s holds a store sealed for %s, an identity this host does not have", file, hdr.Recipient)
	}
	n, err := checkStoreFile(dst, hdr.Recipient, id)
	if err != nil {
		return rep, fmt.Errorf("backup %s is damaged: %w", file, err)
	}
	rep.Values = n
	return rep, nil
}

// checkStoreFile opens a bbolt file read-only, runs bbolt's consistency check, and opens every
// sealed value with id. It returns the number of values opened.
func checkStoreFile(path, recipient string, id age.Identity) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged bbolt page: %v", r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("cannot open bbolt file: %w", err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			return fmt.Errorf("bbolt consistency check: %w", cerr)
		}
		m := tx.Bucket(bMeta)
		if m == nil || tx.Bucket(bPaths) == nil || tx.Bucket(bVersions) == nil || tx.Bucket(bAudit) == nil {
			return errors.New("not a secret store (buckets missing)")
		}
		if got := string(m.Get(kRecipient)); got != recipient {
			return fmt.Errorf("store inside is sealed for %s, header says %s", got, recipient)
		}
		dek, err := openDEK(m.Get(kDEK), id)
		if err != nil {
			return err
		}
		if _, err := open(m.Get(kCanary), dek); err != nil {
			return fmt.Errorf("canary: %w", err)
		}
		return tx.Bucket(bVersions).ForEach(func(p, v []byte) error {
			vb := tx.Bucket(bVersions).Bucket(p)
			if vb == nil {
				return fmt.Errorf("versions of %s are not a bucket", p)
			}
			return vb.ForEach(func(k, raw []byte) error {
				var rec versionRec
				if err := json.Unmarshal(raw, &rec); err != nil {
					return fmt.Errorf("cannot decode %s version: %w", p, err)
				}
				for key, sv := range rec.Sealed {
					if _, err := open(sv, dek); err != nil {
						return fmt.Errorf("%s version %d key %s: %w", p, rec.Version, key, err)
					}
					n++
				}
				return nil
			})
		})
	})
	return n, err
}

// Verify opens file in a scratch location and checks that every value in it decrypts. It does
// not touch the live store. On success it records the time in the manifest.
func (s *Store) Verify(ctx context.Context, file string) (VerifyReport, error) {
	scratch, err := os.MkdirTemp(s.opts.Dir, ".verify-*")
	if err != nil {
		return VerifyReport{}, fmt.Errorf("cannot create scratch dir: %w", err)
	}
	defer os.RemoveAll(scratch)
	rep, err := s.unpackSnapshot(file, filepath.Join(scratch, storeFile))
	if err != nil {
		return rep, &RejectedError{Err: fmt.Errorf("cannot verify backup: %w", err)}
	}
	if rep.Manifest {
		if m, err := readManifest(file); err == nil {
			m.Verified = time.Now().UTC()
			if err := writeManifest(file, m); err != nil {
				return rep, err
			}
		}
	}
	return rep, nil
}

// RejectedError means a backup file failed verification: it is corrupt, truncated, tampered
// with, or from another store. The API answers it with 422.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string { return e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// RestoreReport says what Restore did.
type RestoreReport struct {
	VerifyReport
	// KeptAside is where the replaced store file now is.
	KeptAside string `json:"kept_aside"`
}

// Restore replaces the live store with the one in file. The backup is fully verified in a
// scratch location first, so a corrupt, truncated, tampered or foreign file is refused before
// the live store is touched; the replaced store is kept aside as store.db.replaced-<time>.
func (s *Store) Restore(ctx context.Context, file, by string) (RestoreReport, error) {
	scratch, err := os.MkdirTemp(s.opts.Dir, ".restore-*")
	if err != nil {
		return RestoreReport{}, fmt.Errorf("cannot create scratch dir: %w", err)
	}
	defer os.RemoveAll(scratch)
	staged := filepath.Join(scratch, storeFile)
	rep, err := s.unpackSnapshot(file, staged)
	if err != nil {
		return RestoreReport{VerifyReport: rep}, &RejectedError{Err: fmt.Errorf("cannot restore (the live store was not touched): %w", err)}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return RestoreReport{VerifyReport: rep}, errors.New("cannot restore: secret store is closed")
	}
	// A backup taken before a rotate-key is sealed to a retired identity: bring it to the
	// current one before it goes live.
	if err := s.prepareRestored(staged, rep.Recipient, by, file); err != nil {
		return RestoreReport{VerifyReport: rep}, fmt.Errorf("cannot restore (the live store was not touched): %w", err)
	}
	live := s.DBPath()
	aside := fmt.Sprintf("%s.replaced-%s", live, time.Now().UTC().Format("20060102T150405.000Z"))
	if err := s.db.Close(); err != nil {
		return RestoreReport{VerifyReport: rep}, fmt.Errorf("cannot close live store: %w", err)
	}
	s.db = nil
	reopen := func() error {
		db, err := openBolt(live, s.opts.LockTimeout, false)
		if err != nil {
			return err
		}
		s.db = db
		return nil
	}
	if err := os.Rename(live, aside); err != nil {
		_ = reopen()
		return RestoreReport{VerifyReport: rep}, fmt.Errorf("cannot move live store aside (nothing changed): %w", err)
	}
	if err := os.Rename(staged, live); err != nil {
		_ = os.Rename(aside, live)
		_ = reopen()
		return RestoreReport{VerifyReport: rep}, fmt.Errorf("cannot move restored store into place (the old one is back): %w", err)
	}
	if err := atomicfile.SyncDir(s.opts.Dir); err != nil {
		s.log.Warn("cannot sync secrets dir after restore", "err", err)
	}
	if err := reopen(); err != nil {
		_ = os.Rename(live, staged)
		_ = os.Rename(aside, live)
		rerr := reopen()
		return RestoreReport{VerifyReport: rep}, errors.Join(fmt.Errorf("cannot open restored store (the old one is back): %w", err), rerr)
	}
	s.log.Info("restored secret store from backup", "file", file, "kept_aside", aside, "secrets", rep.Secrets, "by", by)
	s.notify(nil, true)
	return RestoreReport{VerifyReport: rep, KeptAside: aside}, nil
}

func (s *Store) prepareRestored(path, recipient, by, file string) error {
	db, err := openBolt(path, s.opts.LockTimeout, false)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		dek, err := openDEK(tx.Bucket(bMeta).Get(kDEK), s.keys.find(recipient))
		if err != nil {
			return err
		}
		if recipient != s.keys.recipient() || dek.id != s.keys.dek.id {
			if _, err := resealTx(tx, dek, s.keys.dek, s.keys.current); err != nil {
				return err
			}
		}
		return s.appendAudit(tx, nil, AuditEntry{By: by, Op: "restore", Detail: filepath.Base(file)})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// ListBackups lists the manifests in dir, newest first. Files without a manifest are listed with
// what their names say.
func ListBackups(dir string) ([]Manifest, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list backups in %s: %w", dir, err)
	}
	var out []Manifest
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, snapshotPrefix) || !strings.HasSuffix(name, snapshotSuffix) {
			continue
		}
		m, err := readManifest(filepath.Join(dir, name))
		if err != nil {
			m = Manifest{File: name}
			if fi, err := e.Info(); err == nil {
				m.Size, m.Created = fi.Size(), fi.ModTime().UTC()
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File > out[j].File })
	return out, nil
}

// pruneBackups deletes all but the newest keep backups in dir.
func pruneBackups(dir string, keep int) ([]string, error) {
	list, err := ListBackups(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for i := keep; i < len(list); i++ {
		p := filepath.Join(dir, list[i].File)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("cannot remove old backup: %w", err)
		}
		_ = os.Remove(p + manifestSuffix)
		removed = append(removed, list[i].File)
	}
	return removed, nil
}

func readManifest(file string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(file + manifestSuffix)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest %s is damaged: %w", file+manifestSuffix, err)
	}
	return m, nil
}

func writeManifest(file string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(file+manifestSuffix, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("cannot write manifest: %w", err)
	}
	return nil
}

func checkFileSum(file string, m Manifest) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("cannot open backup: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("cannot read backup: %w", err)
	}
	if n != m.Size {
		return fmt.Errorf("backup %s is %d bytes but its manifest says %d: the file is truncated or was changed", file, n, m.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("backup %s has SHA-256 %s but its manifest says %s: the file is corrupt or was tampered with", file, got, m.SHA256)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
