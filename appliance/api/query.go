package api

import (
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// QueryDuration reads the duration argument key of q ("" is 0); a malformed or negative one is
// a 400 naming the argument.
func QueryDuration(q url.Values, key string) (time.Duration, error) {
	v := q.Get(key)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, Errorf(http.StatusBadRequest, "%s %q is not a duration such as 1h or 30m", key, v)
	}
	return d, nil
}

// QueryTime reads the time argument key of q, RFC 3339 or Unix seconds ("" is the zero time);
// anything else is a 400 naming the argument.
func QueryTime(q url.Values, key string) (time.Time, error) {
	v := q.Get(key)
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(f*1e9)), nil
	}
	return time.Time{}, Errorf(http.StatusBadRequest, "%s %q is neither RFC 3339 nor Unix seconds", key, v)
}
