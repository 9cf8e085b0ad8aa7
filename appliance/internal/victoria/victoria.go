// Package victoria holds what appliance/metrics and appliance/logs share about running the
// VictoriaMetrics family of programs (victoria-metrics, victoria-logs, vlagent) as children:
// their flag syntax, duration format, health check and disk accounting. Internal to appliance.
package victoria

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Args merges gluebox's flag values with the user's overrides (which win) into a sorted
// "-name=value" list, the form every VictoriaMetrics program parses.
func Args(defaults, overrides map[string]string) []string {
	flags := make(map[string]string, len(defaults)+len(overrides))
	for k, v := range defaults {
		flags[k] = v
	}
	for k, v := range overrides {
		flags[strings.TrimLeft(k, "-")] = v
	}
	keys := make([]string, 0, len(flags))
	for k := range flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]string, 0, len(keys))
	for _, k := range keys {
		args = append(args, "-"+k+"="+flags[k])
	}
	return args
}

// Duration formats d the way VictoriaMetrics' flags and Prometheus configs accept (30d, 15s,
// 1500ms), not Go's 720h0m0s.
func Duration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// Health returns nil when url (a /health endpoint) answers 200 "OK".
func Health(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "OK" {
		return fmt.Errorf("%s answered %s %q", url, resp.Status, body)
	}
	return nil
}

// DirSize adds up the sizes of the regular files under dir.
func DirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the store removes parts while we walk
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cannot measure %s: %w", dir, err)
	}
	return n, nil
}

// FreeBytes returns the space available to unprivileged writers on dir's filesystem.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("cannot stat filesystem of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Reply reads an error answer's body for a message, at most 300 bytes of it.
func Reply(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
