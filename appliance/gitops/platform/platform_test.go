package platform

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	p, err := Parse([]byte(`apps:
  - name: app-antoniostacos
    repo: https://git.example.com/acme/app-antoniostacos.git
    branches: [main]
    previews: false
    credentials: secret/git/acme
environments:
  prod: {cluster: local}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, ok := p.App("app-antoniostacos")
	if !ok || a.PreviewsEnabled() || a.Credentials != "secret/git/acme" || p.Environments["prod"].Cluster != "local" {
		t.Fatalf("parsed %+v", p)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"unknown key", "apps:\n  - name: a\n    repo: x\n    dockerfil: D\n", "line 4: field dockerfil not found"},
		{"bad name", "apps:\n  - name: A_b\n    repo: x\n", "platform.yaml:2: apps[0].name \"A_b\""},
		{"no repo", "apps:\n  - name: a\n", "apps[0].repo is empty"},
		{"twice", "apps:\n  - {name: a, repo: x}\n  - {name: a, repo: y}\n", "listed twice"},
		{"credentials", "apps:\n  - {name: a, repo: x, credentials: vault/x}\n", "not a secret-store path"},
		{"escape", "apps:\n  - {name: a, repo: x, context: ../..}\n", "inside the repository"},
		{"branch", "apps:\n  - {name: a, repo: x, branches: [\"a b\"]}\n", "not a valid branch name"},
		{"cluster", "environments:\n  prod: {cluster: mars}\n", "only \"local\""},
		{"not yaml", "apps: [\n", "platform.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
