package source_test

import (
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gluebox/gluebox/appliance/gitops/source"
	"github.com/gluebox/gluebox/appliance/gitops/source/gittest"
)

func TestSSH(t *testing.T) {
	srv := gittest.NewServer(t)
	sha := srv.Commit(map[string]string{"deploy/app.yaml": "replicas: 2\n"}, "first")
	ssrv := srv.ServeSSH()

	t.Run("key and known_hosts accepted", func(t *testing.T) {
		s := newSource(t, source.Config{URL: ssrv.URL, Auth: source.Auth{SSHKey: ssrv.ClientKey, KnownHosts: ssrv.KnownHosts}})
		got, err := s.Head(ctx(t))
		if err != nil || got != sha {
			t.Fatalf("Head = %q, %v; want %q", got, err, sha)
		}
		dir, err := s.Checkout(ctx(t), sha)
		if err != nil {
			t.Fatal(err)
		}
		if got := readTree(t, dir)["deploy/app.yaml"]; got != "replicas: 2\n" {
			t.Errorf("deploy/app.yaml = %q", got)
		}
	})
	t.Run("encrypted key with passphrase", func(t *testing.T) {
		block, err := ssh.MarshalPrivateKeyWithPassphrase(ssrv.ClientPrivate, "", []byte("open sesame"))
		if err != nil {
			t.Fatal(err)
		}
		key := pem.EncodeToMemory(block)
		s := newSource(t, source.Config{URL: ssrv.URL, Auth: source.Auth{SSHKey: key, SSHKeyPassphrase: "open sesame", KnownHosts: ssrv.KnownHosts}})
		if got, err := s.Head(ctx(t)); err != nil || got != sha {
			t.Fatalf("Head = %q, %v; want %q", got, err, sha)
		}
		bad := source.Config{URL: ssrv.URL, Auth: source.Auth{SSHKey: key, SSHKeyPassphrase: "wrong", KnownHosts: ssrv.KnownHosts}}
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "passphrase") {
			t.Errorf("Validate with wrong passphrase = %v; want a passphrase error", err)
		}
	})
	t.Run("changed host key refused", func(t *testing.T) {
		_, _, other := gittest.NewKey(t)
		kh := []byte(knownhosts.Line([]string{ssrv.Addr}, other) + "\n")
		s := newSource(t, source.Config{URL: ssrv.URL, Auth: source.Auth{SSHKey: ssrv.ClientKey, KnownHosts: kh}})
		_, err := s.Head(ctx(t))
		wantKind(t, err, source.ErrHostKey, ssrv.URL, "known_hosts")
	})
	t.Run("unknown host refused", func(t *testing.T) {
		_, _, other := gittest.NewKey(t)
		kh := []byte(knownhosts.Line([]string{"git.example.com"}, other) + "\n")
		s := newSource(t, source.Config{URL: ssrv.URL, Auth: source.Auth{SSHKey: ssrv.ClientKey, KnownHosts: kh}})
		_, err := s.Head(ctx(t))
		wantKind(t, err, source.ErrHostKey, ssrv.URL)
	})
	t.Run("wrong client key", func(t *testing.T) {
		key, _, _ := gittest.NewKey(t)
		s := newSource(t, source.Config{URL: ssrv.URL, Auth: source.Auth{SSHKey: key, KnownHosts: ssrv.KnownHosts}})
		_, err := s.Head(ctx(t))
		wantKind(t, err, source.ErrAuth, ssrv.URL)
	})
}
