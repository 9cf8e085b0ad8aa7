package cleanup

import (
	"strings"
	"testing"
)

func TestFilterRules(t *testing.T) {
	in := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j DOCKER
COMMIT
`
	out, changed := FilterRules([]byte(in))
	if !changed {
		t.Fatal("want changed")
	}
	got := string(out)
	if strings.Contains(got, "KUBE-") || strings.Contains(got, "CNI-") {
		t.Fatalf("chains left:\n%s", got)
	}
	if !strings.Contains(got, "-A PREROUTING -j DOCKER") || !strings.Contains(got, "COMMIT") {
		t.Fatalf("unrelated rules lost:\n%s", got)
	}
	if _, changed := FilterRules([]byte("*filter\nCOMMIT\n")); changed {
		t.Fatal("nothing to drop must report unchanged")
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b`); got != "/a b" {
		t.Fatalf("got %q", got)
	}
}
