package cli

import "github.com/spf13/cobra"

// extraCommands returns the commands of components that bring their own (secrets, registry…).
func extraCommands(g *globals) []*cobra.Command {
	return nil
}
