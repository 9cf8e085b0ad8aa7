package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var errCrash = errors.New("injected crash")

// TestRotateKeyCrashAtEveryStep stops a rotation at each step, as a crash would (no cleanup,
// files and bbolt left as they are), then reopens the store: every value must read back, the
// identity file must match the store, and a new rotation must succeed.
func TestRotateKeyCrashAtEveryStep(t *testing.T) {
	for _, step := range rotateSteps {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			dir := filepath.Join(t.TempDir(), "s")
			st, err := Open(StoreOptions{Dir: dir, KeepVersions: 3}, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]map[string]string{}
			for i := range 5 {
				p := fmt.Sprintf("secret/app-%d", i)
				for v := range 4 {
					mustSet(t, st, p, "TOKEN", fmt.Sprintf("%d-%d", i, v), "STATIC", "s")
				}
				want[p] = mustGet(t, st, p, 0)
			}
			oldWant := mustGet(t, st, "secret/app-0", 2)
			oldRecipient := st.Recipient()

			st.crashHook = func(s string) error {
				if s == step {
					return errCrash
				}
				return nil
			}
			if _, err := st.RotateKey(ctx, "t"); !errors.Is(err, errCrash) {
				t.Fatalf("RotateKey = %v, want the injected crash", err)
			}
			st.Close() // the process dies: only the bbolt file is closed

			st2 := newTestStore(t, StoreOptions{Dir: dir, KeepVersions: 3})
			for p, w := range want {
				if diff := cmp.Diff(w, mustGet(t, st2, p, 0)); diff != "" {
					t.Errorf("%s after crash at %s (-want +got):\n%s", p, step, diff)
				}
			}
			if diff := cmp.Diff(oldWant, mustGet(t, st2, "secret/app-0", 2)); diff != "" {
				t.Errorf("old version after crash at %s (-want +got):\n%s", step, diff)
			}
			committed := step != stepStaged && step != stepReseal
			if got := st2.Recipient() != oldRecipient; got != committed {
				t.Errorf("crash at %s: rotated = %v, want %v", step, got, committed)
			}
			if _, err := os.Stat(filepath.Join(dir, stagingFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("staged identity left behind after reopen: %v", err)
			}
			if _, err := st2.RotateKey(ctx, "t"); err != nil {
				t.Fatalf("RotateKey after recovery: %v", err)
			}
			for p, w := range want {
				if diff := cmp.Diff(w, mustGet(t, st2, p, 0)); diff != "" {
					t.Errorf("%s after second rotation (-want +got):\n%s", p, diff)
				}
			}
		})
	}
}

func TestRotateKeyKeepsOldBackupsRestorable(t *testing.T) {
	ctx := context.Background()
	st := newTestStore(t, StoreOptions{})
	mustSet(t, st, "secret/app", "K", "before")
	bdir := t.TempDir()
	m, err := st.Backup(ctx, bdir)
	if err != nil {
		t.Fatal(err)
	}
	old := st.Recipient()
	if _, err := st.RotateKey(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if st.Recipient() == old {
		t.Fatal("recipient did not change")
	}
	mustSet(t, st, "secret/app", "K", "after")
	if _, err := st.Restore(ctx, filepath.Join(bdir, m.File), "t"); err != nil {
		t.Fatalf("restore of a pre-rotation backup: %v", err)
	}
	if diff := cmp.Diff(map[string]string{"K": "before"}, mustGet(t, st, "secret/app", 0)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The restored store was re-sealed to the current identity, so it opens without the
	// retired one.
	dir := st.opts.Dir
	st.Close()
	if err := os.RemoveAll(filepath.Join(dir, retiredDir)); err != nil {
		t.Fatal(err)
	}
	st2 := newTestStore(t, StoreOptions{Dir: dir})
	if diff := cmp.Diff(map[string]string{"K": "before"}, mustGet(t, st2, "secret/app", 0)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
