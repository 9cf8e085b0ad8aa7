package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKubectlArgs(t *testing.T) {
	const ours = "/var/lib/gluebox/kubeconfig/admin.kubeconfig"
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want []string
	}{
		{"ours by default", []string{"get", "pods"}, "", []string{"--kubeconfig=" + ours, "get", "pods"}},
		{"KUBECONFIG wins", []string{"get", "pods"}, "/home/me/.kube/config", []string{"get", "pods"}},
		{"--kubeconfig wins", []string{"--kubeconfig", "/x", "get", "pods"}, "", []string{"--kubeconfig", "/x", "get", "pods"}},
		{"--kubeconfig= wins anywhere", []string{"get", "pods", "--kubeconfig=/x"}, "", []string{"get", "pods", "--kubeconfig=/x"}},
		{"after -- it is an argument", []string{"exec", "p", "--", "--kubeconfig=/x"}, "", []string{"--kubeconfig=" + ours, "exec", "p", "--", "--kubeconfig=/x"}},
		{"no args", nil, "", []string{"--kubeconfig=" + ours}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, kubectlArgs(tc.args, tc.env, ours)); diff != "" {
				t.Errorf("kubectlArgs (-want +got):\n%s", diff)
			}
		})
	}
	if got := kubectlArgs([]string{"version"}, "", ""); !cmp.Equal(got, []string{"version"}) {
		t.Errorf("without a kubeconfig of ours the args stay: %q", got)
	}
}
