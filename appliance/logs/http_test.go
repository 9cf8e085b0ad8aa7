package logs

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/gluebox/gluebox/appliance/api"
)

func TestBuildQuery(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    url.Values
		want    string
		wantErr int
	}{
		{"everything", url.Values{}, "*", 0},
		{"environment", url.Values{"app": {"web"}, "env": {"prod"}}, `kubernetes.pod_namespace:="web-prod"`, 0},
		{"grep is quoted", url.Values{"grep": {`say "hi" \ bye`}}, `"say \"hi\" \\ bye"`, 0},
		{"all parts", url.Values{"app": {"web"}, "env": {"prod"}, "grep": {"x"}, "query": {"level:error"}},
			`kubernetes.pod_namespace:="web-prod" AND "x" AND (level:error)`, 0},
		{"app without env", url.Values{"app": {"web"}}, "", http.StatusBadRequest},
		{"bad name", url.Values{"app": {"Web!"}, "env": {"prod"}}, "", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildQuery(tc.args)
			if tc.wantErr != 0 {
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Status != tc.wantErr {
					t.Fatalf("BuildQuery(%v) = %q, %v; want a %d", tc.args, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("BuildQuery(%v) = %q, %v; want %q", tc.args, got, err, tc.want)
			}
		})
	}
}
