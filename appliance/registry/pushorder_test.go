package registry

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPushOrderSurvivesRestart(t *testing.T) {
	root := t.TempDir()
	a, b := digest.FromString("a"), digest.FromString("b")
	first := &pushOrder{root: root}
	for _, d := range []digest.Digest{a, b, a} { // a pushed again: its latest push counts
		if err := first.record("app", d); err != nil {
			t.Fatal(err)
		}
	}
	again := &pushOrder{root: root} // the registry restarted
	if err := again.record("other/app", b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo string
		d    digest.Digest
		want uint64
	}{
		{"app", a, 3}, {"app", b, 2}, {"other/app", b, 4}, {"other/app", a, 0},
	} {
		if got := again.get(tc.repo, tc.d); got != tc.want {
			t.Errorf("push number of %s@%s = %d, want %d", tc.repo, tc.d, got, tc.want)
		}
	}
	if err := again.remove("app", a); err != nil {
		t.Fatal(err)
	}
	if got := again.get("app", a); got != 0 {
		t.Errorf("push number of a removed manifest = %d, want 0", got)
	}
}
