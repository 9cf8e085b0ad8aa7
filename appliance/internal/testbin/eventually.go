package testbin

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Eventually polls cond every few milliseconds until it holds and fails the test, naming what,
// if it does not within the deadline. It is the one polling loop of gluebox's tests.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, within, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}
