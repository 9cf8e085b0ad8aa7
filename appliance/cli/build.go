package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/imagebuild"
)

// newBuildCmd returns `gluebox build`: list builds, print or follow their logs, cancel one.
func newBuildCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "build", Short: "Image builds of the app repositories"}
	var f struct {
		app, branch, status string
		limit               int
		asJSON              bool
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List builds, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			builds, err := g.api().Builds(cmd.Context(), imagebuild.Filter{App: f.app, Branch: f.branch, Status: imagebuild.Status(f.status), Limit: f.limit})
			if err != nil {
				return err
			}
			if f.asJSON {
				return printJSON(cmd.OutOrStdout(), builds)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tAPP\tBRANCH\tCOMMIT\tSTATUS\tDURATION\tQUEUED\tERROR")
			for _, r := range builds {
				dur := "-"
				if d := r.Duration(); d > 0 {
					dur = d.Round(100 * time.Millisecond).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.App, r.Branch, short(r.Commit), r.Status, dur,
					r.Queued.Local().Format(time.DateTime), firstLine(r.Error))
			}
			return w.Flush()
		},
	}
	list.Flags().StringVar(&f.app, "app", "", "only builds of this app")
	list.Flags().StringVar(&f.branch, "branch", "", "only builds of this branch (pr-<n> for a pull request)")
	list.Flags().StringVar(&f.status, "status", "", "only builds with this status: queued, running, succeeded, failed, cancelled")
	list.Flags().IntVar(&f.limit, "limit", 50, "at most this many (0: all)")
	list.Flags().BoolVar(&f.asJSON, "json", false, "print JSON")

	var follow bool
	logsCmd := &cobra.Command{
		Use:   "logs <id>",
		Short: "Print a build's log (-f follows it until the build ends)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := strconv.ParseUint(args[0], 10, 64); err != nil {
				return fmt.Errorf("build id %q is not a number: see `gluebox build list`", args[0])
			}
			return g.api().BuildLogs(cmd.Context(), args[0], follow, cmd.OutOrStdout())
		},
	}
	logsCmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the build ends")

	cancel := &cobra.Command{
		Use:   "cancel <id>",
		Short: "Cancel a queued or running build",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := g.api().CancelBuild(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "build %s: %s\n", r.ID, r.Status)
			return nil
		},
	}

	sources := &cobra.Command{
		Use:   "sources",
		Short: "What the last poll saw of each app repository in platform.yaml",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			apps, err := g.api().BuildSources(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "APP\tREPO\tBUILDING\tHEADS\tPROBLEM")
			for _, a := range apps {
				var heads []string
				for _, b := range a.Building {
					heads = append(heads, b+"="+short(a.Heads[b]))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Repo, strings.Join(a.Building, ","), strings.Join(heads, " "), a.Error)
			}
			return w.Flush()
		},
	}
	cmd.AddCommand(list, logsCmd, cancel, sources)
	return cmd
}

// newPreviewsCmd returns `gluebox previews`: the open pull-request previews.
func newPreviewsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "previews",
		Short: "List the pull-request preview environments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			previews, err := g.api().Previews(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), previews)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "APP\tPR\tENV\tHEAD\tBUILT\tVIA\tUPDATED")
			for _, p := range previews {
				built := "waiting for its first build"
				if p.Digest != "" {
					built = short(p.BuiltCommit)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.App, p.Number, p.App+"-"+p.Env(), short(p.Commit), built, p.Via,
					p.Updated.Local().Format(time.DateTime))
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}
