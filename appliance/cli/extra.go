package cli

import (
	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/secrets"
)

// extraCommands returns the commands of components that bring their own (secrets, registry…).
func extraCommands(g *globals) []*cobra.Command {
	cmds := append(registry.NewCommands(g.client), secrets.NewCommands(g.client)...)
	for _, c := range cmds {
		if c.Name() == "secret" {
			c.AddCommand(newSecretBindCmds(g)...)
		}
	}
	return cmds
}
