package supervise

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"
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
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := cl.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %v", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
