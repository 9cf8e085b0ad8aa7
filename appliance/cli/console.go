package cli

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/client"
	"github.com/gluebox/gluebox/appliance/server"
)

// newConsoleCmd returns `gluebox console`: where the web console is and its password.
func newConsoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Where the web console listens (log in with `gluebox console password`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := g.api().Console(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "url:      %s\n", info.URL)
			fmt.Fprintf(out, "ca:       %s (trust it in your browser, or use an SSH tunnel to the URL)\n", info.CAFile)
			for _, t := range info.Tools {
				u, _ := url.JoinPath(info.URL, t)
				fmt.Fprintf(out, "tool:     %s\n", u)
			}
			fmt.Fprintln(out, "password: gluebox console password")
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "password",
		Short: "Print the console's login password (change it with `gluebox secret set " + server.ConsolePasswordPath + " password <new>`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ans, err := g.api().Secret(cmd.Context(), server.ConsolePasswordPath, client.SecretOptions{Key: "password"})
			if err != nil {
				return err
			}
			v, ok := ans.Values["password"]
			if !ok {
				return fmt.Errorf("%s has no password key: set one with `gluebox secret set %s password <new>`", server.ConsolePasswordPath, server.ConsolePasswordPath)
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	})
	return cmd
}
