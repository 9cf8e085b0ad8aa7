package kube

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestArgs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		defaults  map[string]string
		overrides map[string]string
		want      []string
	}{
		{"defaults sorted", map[string]string{"b": "2", "a": "1"}, nil, []string{"--a=1", "--b=2"}},
		{"override wins", map[string]string{"v": "0"}, map[string]string{"--v": "4"}, []string{"--v=4"}},
		{"empty removes", map[string]string{"a": "1", "b": "2"}, map[string]string{"a": ""}, []string{"--b=2"}},
		{"new key added", nil, map[string]string{"x": "y"}, []string{"--x=y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Args(tc.defaults, tc.overrides)); diff != "" {
				t.Fatalf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParseOverrides(t *testing.T) {
	got, err := ParseOverrides([]string{"--v=2", "feature-gates=A=true"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"v": "2", "feature-gates": "A=true"}, got); diff != "" {
		t.Fatal(diff)
	}
	if _, err := ParseOverrides([]string{"novalue"}); err == nil {
		t.Fatal("want an error for an argument without '='")
	}
}
