package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"

	"github.com/gluebox/gluebox/appliance/console"
)

// ConsolePasswordPath is the secret-store path of the console's login password (key
// "password"), created on first start; `gluebox secret set` changes it.
const ConsolePasswordPath = "secret/gluebox/console"

// newConsole builds the web console on --console-addr: the login, and VictoriaMetrics' query
// UI behind it when observability runs.
func (s *Server) newConsole(p *platform) (*console.Console, error) {
	var tools []console.Tool
	if p.observe != nil && p.observe.metrics != nil {
		tools = append(tools, console.Tool{Prefix: "/metrics/", Title: "Metrics (VictoriaMetrics query UI)", Handler: p.observe.metrics.UIHandler("/metrics")})
	}
	store := p.sec.Store()
	c, err := console.New(console.Config{
		Addr:    s.cfg.ConsoleAddr,
		CertDir: filepath.Join(s.layout.PKIDir(), "console"),
		Hosts:   []string{s.cfg.NodeIP},
		Password: func(ctx context.Context) ([]byte, error) {
			v, err := store.Values(ctx, ConsolePasswordPath)
			if err != nil {
				return nil, err
			}
			return v["password"], nil
		},
		Tools:  tools,
		Logger: s.log,
	})
	if err != nil {
		return nil, err
	}
	p.console = c
	return c, nil
}

// ensureConsolePassword creates the console password on first start.
func ensureConsolePassword(ctx context.Context, p *platform) error {
	store := p.sec.Store()
	if v, err := store.Values(ctx, ConsolePasswordPath); err == nil && len(v["password"]) > 0 {
		return nil
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	_, err := store.Set(ctx, ConsolePasswordPath, map[string][]byte{"password": []byte(hex.EncodeToString(b))}, "gluebox")
	return err
}
