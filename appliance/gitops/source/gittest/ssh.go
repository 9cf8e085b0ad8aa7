package gittest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer is the SSH side of a Server: it runs `git upload-pack` for
// clients presenting ClientKey. Pushing over SSH is not supported.
type SSHServer struct {
	// URL is ssh://git@127.0.0.1:<port>/repo.git.
	URL string
	// Addr is 127.0.0.1:<port>.
	Addr string
	// ClientKey is an unencrypted PEM ed25519 private key the server accepts.
	ClientKey []byte
	// ClientPrivate is ClientKey decoded, e.g. to re-encode it with a passphrase.
	ClientPrivate ed25519.PrivateKey
	// KnownHosts is a known_hosts line for the server's host key.
	KnownHosts []byte
}

// NewKey returns a fresh ed25519 key as unencrypted PEM, its private key,
// and its SSH public key.
func NewKey(t interface {
	Helper()
	Fatalf(string, ...any)
}) ([]byte, ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("gittest: generate key: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "gittest")
	if err != nil {
		t.Fatalf("gittest: marshal key: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("gittest: public key: %v", err)
	}
	return pem.EncodeToMemory(block), priv, sshPub
}

// ServeSSH serves the repository over SSH on 127.0.0.1 with a fresh host key
// and a fresh authorised client key until the test ends.
func (s *Server) ServeSSH() SSHServer {
	s.t.Helper()
	_, hostPriv, hostPub := NewKey(s.t)
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		s.t.Fatalf("gittest: host signer: %v", err)
	}
	clientPEM, clientPriv, clientPub := NewKey(s.t)
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), clientPub.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("gittest: unknown client key")
		},
	}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatalf("gittest: listen: %v", err)
	}
	s.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serveSSHConn(c, cfg)
		}
	}()
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	return SSHServer{
		URL:           "ssh://git@127.0.0.1:" + port + "/repo.git",
		Addr:          addr,
		ClientKey:     clientPEM,
		ClientPrivate: clientPriv,
		KnownHosts:    []byte(knownhosts.Line([]string{addr}, hostPub) + "\n"),
	}
}

func (s *Server) serveSSHConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.serveSession(ch, creqs)
	}
}

func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "env":
			_ = req.Reply(true, nil)
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				return
			}
			_ = req.Reply(true, nil)
			code := s.runUploadPack(ch, p.Command)
			_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// runUploadPack runs "git-upload-pack '/repo.git'" against the served repo.
func (s *Server) runUploadPack(ch ssh.Channel, command string) uint32 {
	name, arg, _ := strings.Cut(command, " ")
	if name != "git-upload-pack" {
		_, _ = io.WriteString(ch.Stderr(), "gittest: only git-upload-pack is served\n")
		return 1
	}
	p := path.Clean("/" + strings.Trim(arg, "'\""))
	cmd := exec.Command("git", "upload-pack", filepath.Join(s.root, filepath.FromSlash(p)))
	cmd.Env = s.env
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		_, _ = io.WriteString(ch.Stderr(), "gittest: "+err.Error()+"\n")
		return 1
	}
	// Not waited for: the client may keep its side open after upload-pack exits.
	go func() { _, _ = io.Copy(stdin, ch); stdin.Close() }()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return uint32(ee.ExitCode())
		}
		return 1
	}
	return 0
}
