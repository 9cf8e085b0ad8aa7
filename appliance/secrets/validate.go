package secrets

import (
	"errors"
	"fmt"
	"strings"
)

// MaxValueSize is the largest value the store accepts. Kubernetes refuses Secrets over 1 MiB in
// total, so a larger value could never reach an app anyway.
const MaxValueSize = 1 << 20

// maxPathLen keeps paths readable and well under bbolt's key limit.
const maxPathLen = 256

// maxKeyLen is the Kubernetes limit for a Secret data key.
const maxKeyLen = 253

// ErrNotFound is returned (wrapped) when a path, key, version or backup does not exist.
var ErrNotFound = errors.New("not found")

// InputError is bad input from a caller: it says what was wrong, where, and how to fix it. The
// API answers it with 400.
type InputError struct {
	Msg string
}

func (e *InputError) Error() string { return e.Msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// ValidatePath checks a secret path such as "secret/app-antoniostacos" or "secret/git/acme":
// "secret/" followed by one or more segments of letters, digits, '.', '_' or '-'.
func ValidatePath(p string) error {
	const hint = `use "secret/<name>" with segments made of letters, digits, '.', '_' or '-', for example "secret/my-app"`
	switch {
	case p == "":
		return inputErrorf("secret path is empty: %s", hint)
	case len(p) > maxPathLen:
		return inputErrorf("secret path %.40q... is %d characters long, the limit is %d: use a shorter path", p, len(p), maxPathLen)
	case !strings.HasPrefix(p, "secret/"):
		return inputErrorf("secret path %q does not start with \"secret/\": %s", p, hint)
	}
	for i, seg := range strings.Split(p, "/") {
		if seg == "" {
			return inputErrorf("secret path %q has an empty segment (at position %d, a doubled or trailing '/'): %s", p, i+1, hint)
		}
		if seg == "." || seg == ".." {
			return inputErrorf("secret path %q has a %q segment: %s", p, seg, hint)
		}
		for j, r := range seg {
			if !isNameRune(r) {
				return inputErrorf("secret path %q has the character %q in segment %q (offset %d): %s", p, r, seg, j, hint)
			}
		}
	}
	return nil
}

// ValidateKey checks a key name inside a path. Keys become Kubernetes Secret data keys and
// environment variable names, so the same rule applies: letters, digits, '.', '_' or '-', at most
// 253 characters.
func ValidateKey(path, k string) error {
	const hint = "keys may contain letters, digits, '.', '_' and '-' (for example DATABASE_URL)"
	switch {
	case k == "":
		return inputErrorf("key name is empty in %s: %s", path, hint)
	case len(k) > maxKeyLen:
		return inputErrorf("key %.40q... in %s is %d characters long, the limit is %d", k, path, len(k), maxKeyLen)
	case k == "." || k == "..":
		return inputErrorf("key %q in %s is not allowed: %s", k, path, hint)
	}
	for i, r := range k {
		if !isNameRune(r) {
			return inputErrorf("key %q in %s has the character %q at offset %d: %s", k, path, r, i, hint)
		}
	}
	return nil
}

// validateValue refuses values Kubernetes could not carry.
func validateValue(path, k string, v []byte) error {
	if len(v) > MaxValueSize {
		return inputErrorf("value of %s key %s is %d bytes, the limit is %d (1 MiB): store large files elsewhere and keep only a reference here", path, k, len(v), MaxValueSize)
	}
	return nil
}

func validateValues(path string, values map[string][]byte) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	if len(values) == 0 {
		return inputErrorf("no keys given for %s: give at least one key=value", path)
	}
	for k, v := range values {
		if err := ValidateKey(path, k); err != nil {
			return err
		}
		if err := validateValue(path, k, v); err != nil {
			return err
		}
	}
	return nil
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}
