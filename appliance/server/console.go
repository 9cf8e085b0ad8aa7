package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	"github.com/gluebox/gluebox/appliance/console"
	"github.com/gluebox/gluebox/appliance/secrets"
)

// ConsolePasswordPath is the secret-store path of the console's login password (key
// "password"), created on first start; `gluebox secret set` changes it.
const ConsolePasswordPath = "secret/gluebox/console"

// newConsole builds the web console on addr: the login (its password in the secret store at
// ConsolePasswordPath) and the tools behind it.
func newConsole(addr, certDir, nodeIP string, store *secrets.Store, tools []console.Tool, log *slog.Logger) (*console.Console, error) {
	return console.New(console.Config{
		Addr:    addr,
		CertDir: certDir,
		Hosts:   []string{nodeIP},
		Password: func(ctx context.Context) ([]byte, error) {
			v, err := store.Values(ctx, ConsolePasswordPath)
			if err != nil {
				return nil, err
			}
			return v["password"], nil
		},
		Tools:  tools,
		Logger: log,
	})
}

// ensureConsolePassword creates the console password on first start.
func ensureConsolePassword(ctx context.Context, store *secrets.Store) error {
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
