package webhook

import "testing"

func TestNormalizeURL(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"https://github.com/Acme/repo.git", "github.com/Acme/repo"},
		{"https://github.com/Acme/repo", "github.com/Acme/repo"},
		{"https://github.com/Acme/repo/", "github.com/Acme/repo"},
		{"HTTPS://GitHub.COM/Acme/repo.git", "github.com/Acme/repo"},
		{"http://github.com/Acme/repo.git", "github.com/Acme/repo"},
		{"https://user:token@github.com/Acme/repo.git", "github.com/Acme/repo"},
		{"git@github.com:Acme/repo.git", "github.com/Acme/repo"},
		{"git@GitHub.com:Acme/repo", "github.com/Acme/repo"},
		{"github.com:Acme/repo.git", "github.com/Acme/repo"},
		{"ssh://git@github.com/Acme/repo.git", "github.com/Acme/repo"},
		{"ssh://git@github.com:22/Acme/repo.git", "github.com/Acme/repo"},
		{"git+ssh://git@github.com/Acme/repo.git", "github.com/Acme/repo"},
		{"git://github.com/Acme/repo.git", "github.com/Acme/repo"},
		{"  https://github.com/Acme/repo.git\n", "github.com/Acme/repo"},
		{"https://github.com./Acme/repo", "github.com/Acme/repo"},
		{"https://github.com/Acme/repo.git?x=1#frag", "github.com/Acme/repo"},
		{"https://github.com//Acme//repo.git", "github.com/Acme/repo"},
		// Ports go: the HTTPS and SSH ports of one forge differ.
		{"https://git.example.com:3000/acme/repo.git", "git.example.com/acme/repo"},
		{"ssh://git@git.example.com:2222/acme/repo.git", "git.example.com/acme/repo"},
		// Nested groups (GitLab).
		{"git@gitlab.example.com:platform/team/deploy.git", "gitlab.example.com/platform/team/deploy"},
		{"https://gitlab.example.com/platform/team/deploy", "gitlab.example.com/platform/team/deploy"},
		// Path case is kept.
		{"https://github.com/acme/repo", "github.com/acme/repo"},
		// IPv6.
		{"http://[::1]:8080/repo.git", "[::1]/repo"},
		{"git@[::1]:repo.git", "[::1]/repo"},
		// Its own output is accepted unchanged.
		{"github.com/Acme/repo", "github.com/Acme/repo"},
		{"[::1]/repo", "[::1]/repo"},
		// Not repositories.
		{"", ""},
		{"   ", ""},
		{"https://github.com", ""},
		{"https://github.com/", ""},
		{"https://github.com/.git", ""},
		{"/srv/git/repo.git", ""},
		{"file:///srv/git/repo.git", ""},
		{"ftp://example.com/repo", ""},
		{"repo", ""},
		{"https:///repo", ""},
		{"https://gith\x00ub.com/repo", ""},
	}
	for _, tc := range tests {
		got, err := NormalizeURL(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NormalizeURL(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		if again, err := NormalizeURL(got); err != nil || again != got {
			t.Errorf("NormalizeURL(%q) = %q, %v; not idempotent", got, again, err)
		}
	}
}
