package imagebuild

import (
	"strings"
	"testing"
)

func TestSanitizeTag(t *testing.T) {
	long := strings.Repeat("a", 200)
	for _, tt := range []struct{ in, want string }{
		{"main", "main"},
		{"feature/login", "feature-login"},
		{"release-1.2", "release-1.2"},
		{"renovate/@types~node", "renovate-types-node"},
		{"fix//double--dash", "fix-double-dash"},
		{".hidden", "hidden"},
		{"-leading", "leading"},
		{"trailing/", "trailing"},
		{"ünïcode", "n-code"},
		{"Upper_Case", "Upper_Case"},
		{"", "branch-e3b0c442"},
		{"///", "branch-732c4e97"},
	} {
		if got := SanitizeTag(tt.in); got != tt.want {
			t.Errorf("SanitizeTag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	got := SanitizeTag(long)
	if len(got) != maxTagLen || !strings.HasPrefix(got, "aaaa") || got == SanitizeTag(long+"b") {
		t.Errorf("SanitizeTag(200×a) = %q (%d chars): want 128 chars ending in a hash", got, len(got))
	}
	for _, in := range []string{"main", "feature/x", long, "ünïcode", "", "a b c", "x:y@z"} {
		if err := ValidateRef("127.0.0.1:5000/app:" + SanitizeTag(in)); err != nil {
			t.Errorf("tag of %q is not valid: %v", in, err)
		}
	}
}

func TestValidateRef(t *testing.T) {
	for _, tt := range []struct {
		ref     string
		wantErr string
	}{
		{"127.0.0.1:5000/app:main", ""},
		{"registry.gluebox.local/team/app:0123abc", ""},
		{"docker.io/library/busybox:1", ""},
		{"app:main", "must name its registry"},
		{"library/app:main", "must name its registry"},
		{"127.0.0.1:5000/app", "has no tag"},
		{"127.0.0.1:5000/app@sha256:" + strings.Repeat("a", 64), "has a digest"},
		{"127.0.0.1:5000/App:main", "invalid image reference"},
		{"127.0.0.1:5000/app:feature/x", "invalid image reference"},
		{"", "invalid image reference"},
	} {
		err := ValidateRef(tt.ref)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateRef(%q) = %v, want nil", tt.ref, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidateRef(%q) = %v, want an error with %q", tt.ref, err, tt.wantErr)
		}
	}
}

func TestImageRef(t *testing.T) {
	got, err := ImageRef("127.0.0.1:5000", "shop", "feature/Cart #2")
	if err != nil || got != "127.0.0.1:5000/shop:feature-Cart-2" {
		t.Errorf("ImageRef = %q, %v", got, err)
	}
	if _, err := ImageRef("127.0.0.1:5000", "Shop", "main"); err == nil {
		t.Error("ImageRef accepted an upper-case repository")
	}
}
