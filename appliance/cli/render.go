package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/gitops/render"
	"github.com/gluebox/gluebox/appliance/registry"
)

// newAppCmd returns `gluebox app`: render a deployment-configurations repository offline,
// exactly as the GitOps engine does, so a repository can be checked before it is pushed; and
// list/show/rollback/release/manifest the environments the engine runs.
func newAppCmd(g *globals) *cobra.Command {
	app := &cobra.Command{Use: "app", Short: "Apps and their environments"}
	var opts render.Options
	var repo string
	var digestOnly bool
	renderCmd := &cobra.Command{
		Use:   "render <app> <env>",
		Short: "Render one environment of a deployment-configurations repository (offline) and print its manifests",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.App, opts.Env = args[0], args[1]
			fsys, closeRepo, err := render.OpenRepo(repo)
			if err != nil {
				return err
			}
			defer closeRepo()
			res, err := render.Render(fsys, opts)
			if err != nil {
				return err
			}
			if digestOnly {
				fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# %s/%s → namespace %s, source %s, digest %s\n", res.App, res.Env, res.Namespace, res.Source, res.Digest)
			_, err = cmd.OutOrStdout().Write(res.Manifest)
			return err
		},
	}
	f := renderCmd.Flags()
	f.StringVar(&repo, "repo", ".", "checked-out deployment-configurations repository")
	f.StringVar(&opts.Domain, "domain", "gluebox.local", "DNS suffix of default hostnames")
	f.StringVar(&opts.Commit, "commit", "", "commit SHA to label the objects with")
	f.StringVar(&opts.Registry, "registry", registry.Host, "registry used when values name none")
	f.StringVar(&opts.Overlay, "overlay", "", "env-overlay to use (default: chosen by the layout rules; \"-\" for none)")
	f.BoolVar(&digestOnly, "digest", false, "print only the render's digest")
	app.AddCommand(renderCmd)
	app.AddCommand(newAppStatusCmds(g)...)
	return app
}
