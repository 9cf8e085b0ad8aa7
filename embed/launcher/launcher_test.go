package launcher

import (
	"os"
	"testing"
)

func TestDataDir(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--data-dir", "/x"}, "/x"},
		{[]string{"status", "--data-dir=/y"}, "/y"},
		{[]string{"kubectl", "--", "--data-dir", "/z"}, "/var/lib/gluebox"},
		{nil, "/var/lib/gluebox"},
	} {
		if got := DataDir(tc.args, func(string) string { return "" }); got != tc.want {
			t.Errorf("DataDir(%v) = %q, want %q", tc.args, got, tc.want)
		}
	}
	if got := DataDir(nil, func(string) string { return "/env" }); got != "/env" {
		t.Errorf("env not honoured: %q", got)
	}
}

func TestEnsureExtractsOnceAndVerifies(t *testing.T) {
	root := t.TempDir()
	exe, err := Ensure(root)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(exe)
	if err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("extracted program missing or not executable: %v", err)
	}
	again, err := Ensure(root)
	if err != nil || again != exe {
		t.Fatalf("second Ensure = %q, %v", again, err)
	}
}
