package imagebuild

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIndexIsTheNewestSuccessfulBuild(t *testing.T) {
	tq := newTestQueue(t, "", QueueConfig{Concurrency: 4})
	if img, known := tq.Index().Latest("shop", "main"); img != (Image{}) || known {
		t.Fatalf("empty queue: %+v, known %v", img, known)
	}
	build := func(branch, name string, ok bool) Record {
		t.Helper()
		r := tq.submit(t, "shop", branch, name)
		tq.fake.waitStarted(t, name)
		if ok {
			tq.fake.step(t, name, fakeStep{done: true})
		} else {
			tq.fake.step(t, name, fakeStep{err: errors.New("Dockerfile:1: no")})
		}
		return tq.wait(t, r.ID)
	}
	build("main", "one", false)
	if img, known := tq.Index().Latest("shop", "main"); img.Digest != "" || !known {
		t.Fatalf("after a failed build: %+v, known %v; want no image, known", img, known)
	}
	first := build("main", "two", true)
	build("main", "three", false)
	build("pr-7", "four", true)
	img, known := tq.Index().Latest("shop", "main")
	if diff := cmp.Diff(Image{Digest: "sha256:two", Commit: "c-two", Build: first.ID}, img); diff != "" || !known {
		t.Fatalf("main after a failed newer build (-want +got):\n%s", diff)
	}
	if img, _ := tq.Index().Latest("shop", "pr-7"); img.Digest != "sha256:four" {
		t.Fatalf("pr-7: %+v", img)
	}
	if _, known := tq.Index().Latest("other", "main"); known {
		t.Fatal("another app's key is known")
	}
}
