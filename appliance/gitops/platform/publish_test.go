package platform

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPublisherCallsSubscribersOnChange(t *testing.T) {
	p := NewPublisher()
	var a, b []string
	p.Subscribe(func(_ context.Context, raw []byte) { a = append(a, string(raw)) })
	ctx := context.Background()
	p.Publish(ctx, []byte("apps: []\n"))
	p.Publish(ctx, []byte("apps: []\n")) // unchanged: nobody is called
	p.Subscribe(func(_ context.Context, raw []byte) { b = append(b, string(raw)) })
	p.Publish(ctx, nil) // platform.yaml removed
	p.Publish(ctx, nil)
	if diff := cmp.Diff([]string{"apps: []\n", ""}, a); diff != "" {
		t.Errorf("first subscriber (-want +got):\n%s", diff)
	}
	// A late subscriber gets the last content at once, then the changes.
	if diff := cmp.Diff([]string{"apps: []\n", ""}, b); diff != "" {
		t.Errorf("late subscriber (-want +got):\n%s", diff)
	}
}
