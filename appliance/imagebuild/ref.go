package imagebuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/distribution/reference"
)

// maxTagLen is the longest tag the OCI distribution spec allows.
const maxTagLen = 128

// SanitizeTag turns a branch name (or any string) into a valid image tag: characters outside
// [A-Za-z0-9_.-] become '-', runs of '-' collapse, the tag starts with a letter, digit or '_',
// and it is at most 128 characters. A name that had to be shortened, or had nothing usable,
// gets a short hash of the original so different branches keep different tags.
//
//	main             → main
//	feature/login    → feature-login
//	renovate/@types~x → renovate-types-x
func SanitizeTag(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range s {
		ok := r == '_' || r == '.' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok || r == '-' {
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = true
			continue
		}
		if b.Len() == 0 && r == '.' {
			continue // a tag cannot start with '.'
		}
		b.WriteRune(r)
		dash = false
	}
	tag := strings.TrimRight(b.String(), "-.")
	sum := sha256.Sum256([]byte(s))
	short := hex.EncodeToString(sum[:4])
	switch {
	case tag == "":
		return "branch-" + short
	case len(tag) > maxTagLen:
		return strings.TrimRight(tag[:maxTagLen-len(short)-1], "-.") + "-" + short
	}
	return tag
}

// ValidateRef checks that ref names a repository in a registry with a tag, as the image
// exporter needs to push it: "127.0.0.1:5000/app:main". Digests are refused (a build cannot
// push to a digest); names without a registry are refused so nothing is pushed to Docker Hub
// by accident.
func ValidateRef(ref string) error {
	named, err := reference.ParseNamed(ref)
	if err != nil {
		if _, nerr := reference.ParseNormalizedNamed(ref); nerr == nil {
			return fmt.Errorf("build: image reference %q must name its registry, e.g. 127.0.0.1:5000/%s", ref, ref)
		}
		return fmt.Errorf("build: invalid image reference %q: %w", ref, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return fmt.Errorf("build: image reference %q has a digest; builds push to tags", ref)
	}
	if _, ok := named.(reference.Tagged); !ok {
		return fmt.Errorf("build: image reference %q has no tag", ref)
	}
	return nil
}

// ImageRef returns registry/repo:SanitizeTag(tag) and validates it. repo is an app name
// (lowercase letters, digits and separators, as the registry requires).
func ImageRef(registry, repo, tag string) (string, error) {
	ref := registry + "/" + repo + ":" + SanitizeTag(tag)
	if err := ValidateRef(ref); err != nil {
		return "", err
	}
	return ref, nil
}
