package dns

import (
	goldenfile "github.com/gluebox/gluebox/appliance/internal/golden"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, name, []byte(got))
}

func TestCorefileGolden(t *testing.T) {
	got := Corefile(Config{
		NodeIP:     net.ParseIP("192.168.1.20"),
		Port:       10053,
		Kubeconfig: "/var/lib/gluebox/kubeconfig/coredns.yaml",
		Upstream:   "/run/systemd/resolve/resolv.conf",
	})
	golden(t, "Corefile", got)
}

func TestNewWritesCorefileWithDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "coredns")
	cfg := Config{
		Binary:     "/nonexistent/coredns",
		Dir:        dir,
		NodeIP:     net.ParseIP("10.0.0.5"),
		ServiceIP:  net.ParseIP("10.43.0.10"),
		Kubeconfig: "/k/coredns.yaml",
	}
	d, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.Port != 10053 {
		t.Errorf("default port = %d, want 10053", d.cfg.Port)
	}
	if d.cfg.Upstream != "/etc/resolv.conf" {
		t.Errorf("default upstream = %q, want /etc/resolv.conf", d.cfg.Upstream)
	}
	b, err := os.ReadFile(filepath.Join(dir, "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".:10053 {", "bind 10.0.0.5\n", "ready 10.0.0.5:10054\n", "kubeconfig /k/coredns.yaml\n", "forward . /etc/resolv.conf\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Corefile lacks %q:\n%s", want, b)
		}
	}
	if got := d.State(); got.Name != "coredns" || got.State != "starting" {
		t.Errorf("state before Run = %+v", got)
	}
	if d.Name() != "coredns" {
		t.Errorf("Name = %q", d.Name())
	}
}

func TestNewKeepsExplicitPort(t *testing.T) {
	d, err := New(Config{Dir: t.TempDir(), NodeIP: net.ParseIP("10.0.0.5"), Port: 5353, Upstream: "/r.conf"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.Port != 5353 || d.cfg.Upstream != "/r.conf" {
		t.Errorf("explicit settings overridden: %+v", d.cfg)
	}
}
