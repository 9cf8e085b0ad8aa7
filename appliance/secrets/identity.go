package secrets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/gluebox/gluebox/appliance/atomicfile"
)

// File names inside the secrets dir.
const (
	identityFile  = "identity"     // the current X25519 identity (maybe passphrase-sealed)
	stagingFile   = "identity.new" // a rotate-key in progress
	retiredDir    = "retired"      // identities replaced by rotate-key; older backups need them
	storeFile     = "store.db"
	ageHeaderLine = "age-encryption.org/v1"
)

// keyring is the current identity plus every retired one. Values in the live store are always
// sealed to current; retired identities only open older backups.
type keyring struct {
	current *age.X25519Identity
	dek     *dataKey // the store's data key, opened with current
	retired []*age.X25519Identity
}

func (k *keyring) recipient() string { return k.current.Recipient().String() }

// sealID names what values are sealed to now; it changes with every rotate-key.
func (k *keyring) sealID() string { return k.dek.id }

// all returns every identity, current first, for opening backups.
func (k *keyring) all() []age.Identity {
	ids := []age.Identity{k.current}
	for _, r := range k.retired {
		ids = append(ids, r)
	}
	return ids
}

// find returns the identity whose public key is recipient.
func (k *keyring) find(recipient string) *age.X25519Identity {
	if k.current.Recipient().String() == recipient {
		return k.current
	}
	for _, r := range k.retired {
		if r.Recipient().String() == recipient {
			return r
		}
	}
	return nil
}

// identityCodec reads and writes identity files, sealing them with a passphrase when one is set.
type identityCodec struct {
	passphrase string
	workFactor int // scrypt log2(N); 0 means age's default
}

func (c identityCodec) encode(id *age.X25519Identity) ([]byte, error) {
	var plain bytes.Buffer
	fmt.Fprintf(&plain, "# gluebox secret store identity, created %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&plain, "# public key: %s\n", id.Recipient())
	fmt.Fprintf(&plain, "# losing this file makes the secret store and its backups unreadable: keep a copy off this host\n")
	fmt.Fprintf(&plain, "%s\n", id)
	if c.passphrase == "" {
		return plain.Bytes(), nil
	}
	r, err := age.NewScryptRecipient(c.passphrase)
	if err != nil {
		return nil, fmt.Errorf("cannot use passphrase: %w", err)
	}
	if c.workFactor > 0 {
		r.SetWorkFactor(c.workFactor)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r)
	if err != nil {
		return nil, fmt.Errorf("cannot seal identity with passphrase: %w", err)
	}
	if _, err := w.Write(plain.Bytes()); err != nil {
		return nil, fmt.Errorf("cannot seal identity with passphrase: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("cannot seal identity with passphrase: %w", err)
	}
	return out.Bytes(), nil
}

func (c identityCodec) decode(name string, b []byte) (*age.X25519Identity, error) {
	if bytes.HasPrefix(b, []byte(ageHeaderLine)) {
		if c.passphrase == "" {
			return nil, fmt.Errorf("identity file %s is protected by a passphrase, but none was given: set the secret store passphrase (config secrets.passphrase or its file)", name)
		}
		sid, err := age.NewScryptIdentity(c.passphrase)
		if err != nil {
			return nil, fmt.Errorf("cannot use passphrase: %w", err)
		}
		r, err := age.Decrypt(bytes.NewReader(b), sid)
		if err != nil {
			return nil, fmt.Errorf("cannot unlock identity file %s with the given passphrase (wrong passphrase?): %w", name, err)
		}
		if b, err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("cannot unlock identity file %s: %w", name, err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, fmt.Errorf("identity file %s does not hold an age X25519 identity (AGE-SECRET-KEY-1...): %w", name, err)
		}
		return id, nil
	}
	return nil, fmt.Errorf("identity file %s is empty: it must hold an age X25519 identity (AGE-SECRET-KEY-1...)", name)
}

func (c identityCodec) load(path string) (*age.X25519Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return c.decode(path, b)
}

// write stores id at path atomically (temp file, fsync, rename, fsync dir) with mode 0600.
func (c identityCodec) write(path string, id *age.X25519Identity) error {
	b, err := c.encode(id)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// loadRetired reads every identity under dir/retired, newest first.
func (c identityCodec) loadRetired(dir string) ([]*age.X25519Identity, error) {
	ents, err := os.ReadDir(filepath.Join(dir, retiredDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read retired identities: %w", err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() > ents[j].Name() })
	var ids []*age.X25519Identity
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		id, err := c.load(filepath.Join(dir, retiredDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("cannot load retired identity: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// retire keeps a copy of id under dir/retired so backups sealed to it stay restorable.
func (c identityCodec) retire(dir string, id *age.X25519Identity) error {
	rd := filepath.Join(dir, retiredDir)
	if err := os.MkdirAll(rd, 0o700); err != nil {
		return fmt.Errorf("cannot create %s: %w", rd, err)
	}
	// The public key names the file, so retiring twice (a resumed rotation) is harmless.
	name := filepath.Join(rd, "identity-"+id.Recipient().String())
	if _, err := os.Stat(name); err == nil {
		return nil
	}
	return c.write(name, id)
}

// seal encrypts plain to recipient as one age file.
func seal(r age.Recipient, plain []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(plain) + 256)
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, fmt.Errorf("cannot seal value: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("cannot seal value: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("cannot seal value: %w", err)
	}
	return buf.Bytes(), nil
}

// open decrypts one sealed value.
func open(sealed []byte, ids ...age.Identity) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(sealed), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("value was sealed for a different identity: %w", err)
		}
		return nil, fmt.Errorf("cannot open sealed value: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxValueSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot open sealed value (damaged?): %w", err)
	}
	return b, nil
}
