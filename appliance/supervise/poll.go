package supervise

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// PollHTTP polls url until it answers 200, ctx ends (the error then says what it last saw), or
// forever. Components serving health on loopback with a self-signed certificate (the upstream
// controller-manager and scheduler) are polled with insecureTLS.
func PollHTTP(ctx context.Context, url string, insecureTLS bool) error {
	tr := &http.Transport{}
	if insecureTLS {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := cl.Do(req)
		if err != nil {
			if ctx.Err() == nil { // keep what the server said, not that we stopped asking
				last = err
			}
			return false, nil
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("%s answered %s", url, resp.Status)
			return false, nil
		}
		return true, nil
	})
	if err != nil && ctx.Err() != nil {
		if last == nil {
			last = ctx.Err()
		}
		return fmt.Errorf("not healthy: %v", last)
	}
	return err
}
