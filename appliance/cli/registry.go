package cli

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/registry"
)

// newRegistryCmd returns `gluebox registry` with its `list` and `gc` sub-commands.
func newRegistryCmd(g *globals) *cobra.Command {
	root := &cobra.Command{Use: "registry", Short: "Inspect and clean the built-in OCI registry"}

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List repositories with their tags and sizes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repos, err := g.api().RegistryRepositories(cmd.Context())
			if err != nil {
				return fmt.Errorf("cannot list repositories: %w", err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), repos)
			}
			return printRepos(cmd.OutOrStdout(), repos)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var opts registry.GCOptions
	var keep []string
	var gcJSON bool
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Delete old manifests by the retention policy and reclaim unreferenced blobs",
		Long: "gc keeps the newest --keep-last manifests of every repository (default: the server's setting, 10)\n" +
			"and every digest given with --keep, deletes the other manifests and their tags, then deletes blobs\n" +
			"that no manifest references. The registry keeps serving pulls meanwhile.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, k := range keep {
				d, err := digest.Parse(k)
				if err != nil {
					return fmt.Errorf("cannot keep %q: not a digest (sha256:...): %w", k, err)
				}
				opts.Keep = append(opts.Keep, d)
			}
			rep, err := g.api().RegistryGC(cmd.Context(), opts)
			if err != nil {
				return fmt.Errorf("cannot garbage-collect registry: %w", err)
			}
			if gcJSON {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			verb := "deleted"
			if rep.DryRun {
				verb = "would delete"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %d manifests (%d tags) and %d blobs, %s freed, in %s; %d blobs kept, %d spared as too young\n",
				verb, rep.ManifestsDeleted, rep.TagsDeleted, rep.BlobsDeleted, humanBytes(rep.BytesFreed), rep.Duration, rep.BlobsKept, rep.BlobsTooYoung)
			return err
		},
	}
	gc.Flags().IntVar(&opts.KeepLast, "keep-last", 0, "newest manifests to keep per repository (0: server default)")
	gc.Flags().StringSliceVar(&keep, "keep", nil, "digest to keep in every repository (repeatable)")
	gc.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be deleted, delete nothing")
	gc.Flags().BoolVar(&gcJSON, "json", false, "print the report as JSON")

	root.AddCommand(list, gc)
	return root
}

func printRepos(w io.Writer, repos []registry.RepoInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE")
	for _, r := range repos {
		if len(r.Tags) == 0 {
			fmt.Fprintf(tw, "%s\t<none>\t%d manifests\t%s\n", r.Name, r.Manifests, humanBytes(r.Size))
			continue
		}
		for _, t := range r.Tags {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, t.Name, shortDigest(t.Digest.String()), humanBytes(t.Size))
		}
	}
	return tw.Flush()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
