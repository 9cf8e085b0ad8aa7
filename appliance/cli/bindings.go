package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/secrets/kubesync"
)

// newSecretBindCmds returns `secret bind`, `secret unbind` and `secret bindings`: they declare
// which Kubernetes Secret follows which store path (apps' externalSecret values will declare
// the same through GitOps).
func newSecretBindCmds(g *globals) []*cobra.Command {
	var keys []string
	bind := &cobra.Command{
		Use:   "bind <namespace> <secret-name> <store-path>",
		Short: "Keep a Kubernetes Secret in step with a store path; workloads using it roll on change",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			b := kubesync.Binding{Namespace: args[0], Name: args[1], Path: args[2]}
			for _, kv := range keys {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--key %q is not secretKey=storeKey", kv)
				}
				if b.Keys == nil {
					b.Keys = map[string]string{}
				}
				b.Keys[k] = v
			}
			if err := b.Validate(); err != nil {
				return err
			}
			if _, err := g.api().Bind(cmd.Context(), b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret %s/%s follows %s\n", b.Namespace, b.Name, b.Path)
			return nil
		},
	}
	bind.Flags().StringArrayVar(&keys, "key", nil, "map one key: secretKey=storeKey (repeatable; default: every key as is)")
	unbind := &cobra.Command{
		Use:   "unbind <namespace> <secret-name>",
		Short: "Stop syncing a Kubernetes Secret (the Secret itself stays)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := g.api().Unbind(cmd.Context(), args[0], args[1])
			return err
		},
	}
	list := &cobra.Command{
		Use:   "bindings",
		Short: "List the Kubernetes Secrets kept in step with the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.api().SecretBindings(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SECRET\tPATH\tLAST SYNC\tERROR")
			for _, b := range st {
				last := "-"
				if !b.LastSync.IsZero() {
					last = b.LastSync.Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\n", b.Namespace, b.Name, b.Path, last, b.Error)
			}
			return w.Flush()
		},
	}
	return []*cobra.Command{bind, unbind, list}
}
