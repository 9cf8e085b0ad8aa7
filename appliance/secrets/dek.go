package secrets

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

// Values are sealed as age files whose file key is wrapped by a store data key (DEK) instead of
// by an X25519 exchange per value: an X25519 wrap costs two scalar multiplications (~0.2 ms of
// CPU on the reference VM), which alone would cap batched writes near the 2,000/s target. The
// DEK itself is an age file sealed to the X25519 identity and kept in the store's meta bucket,
// so the identity file is still the only way in, and rotate-key replaces both. The stanza
// follows age's own recipients: HKDF-SHA256 over the DEK with a random salt gives a one-time
// ChaCha20-Poly1305 key that seals the 16-byte file key under a zero nonce.
const (
	dekStanzaType = "gluebox-dek"
	dekInfo       = "gluebox secret store DEK v1"
	dekSize       = 32
)

// dataKey is both the age Recipient and the age Identity of one DEK.
type dataKey struct {
	key []byte
	id  string // base64 of the first 8 bytes of SHA-256(key): names the DEK in stanzas
}

var (
	_ age.Recipient = (*dataKey)(nil)
	_ age.Identity  = (*dataKey)(nil)
)

func newDataKey() (*dataKey, error) {
	k := make([]byte, dekSize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cannot generate data key: %w", err)
	}
	return dataKeyFrom(k)
}

func dataKeyFrom(k []byte) (*dataKey, error) {
	if len(k) != dekSize {
		return nil, fmt.Errorf("data key is %d bytes, expected %d", len(k), dekSize)
	}
	sum := sha256.Sum256(k)
	return &dataKey{key: append([]byte(nil), k...), id: base64.RawStdEncoding.EncodeToString(sum[:8])}, nil
}

func (d *dataKey) aead(salt []byte) (cipherAEAD, error) {
	wk, err := hkdf.Key(sha256.New, d.key, salt, dekInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.New(wk)
}

type cipherAEAD interface {
	Seal(dst, nonce, plaintext, additionalData []byte) []byte
	Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	NonceSize() int
}

// Wrap implements age.Recipient.
func (d *dataKey) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	a, err := d.aead(salt)
	if err != nil {
		return nil, err
	}
	body := a.Seal(nil, make([]byte, a.NonceSize()), fileKey, nil)
	return []*age.Stanza{{Type: dekStanzaType, Args: []string{d.id, base64.RawStdEncoding.EncodeToString(salt)}, Body: body}}, nil
}

// Unwrap implements age.Identity.
func (d *dataKey) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		if s.Type != dekStanzaType || len(s.Args) != 2 || s.Args[0] != d.id {
			continue
		}
		salt, err := base64.RawStdEncoding.Strict().DecodeString(s.Args[1])
		if err != nil || len(salt) != 16 {
			return nil, errors.New("malformed gluebox-dek stanza")
		}
		a, err := d.aead(salt)
		if err != nil {
			return nil, err
		}
		fk, err := a.Open(nil, make([]byte, a.NonceSize()), s.Body, nil)
		if err != nil {
			return nil, fmt.Errorf("sealed value does not open with the store's data key (damaged?): %w", err)
		}
		return fk, nil
	}
	return nil, age.ErrIncorrectIdentity
}

// sealDEK seals a data key to the X25519 identity's recipient, for the meta bucket.
func sealDEK(d *dataKey, r age.Recipient) ([]byte, error) { return seal(r, d.key) }

// openDEK opens the meta bucket's data key with an X25519 identity.
func openDEK(sealed []byte, ids ...age.Identity) (*dataKey, error) {
	k, err := open(sealed, ids...)
	if err != nil {
		return nil, fmt.Errorf("cannot open the store's data key: %w", err)
	}
	return dataKeyFrom(k)
}
