package cli

import (
	"bytes"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func scenario(t *testing.T, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "deployment-configurations", name)
}

func TestAppRender(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"renders an env", []string{"app", "render", "web", "prod", "--repo", scenario(t, "layered")}, "namespace: web-prod", ""},
		{"digest only", []string{"app", "render", "web", "prod", "--digest", "--repo", scenario(t, "layered")}, "sha256:", ""},
		{"unknown app", []string{"app", "render", "nope", "prod", "--repo", scenario(t, "layered")}, "", "nope"},
		{"missing repo", []string{"app", "render", "web", "prod", "--repo", filepath.Join(t.TempDir(), "absent")}, "", "cannot open repository"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := NewRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetArgs(tc.args)
			err := root.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}
