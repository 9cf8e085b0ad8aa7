package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/gitops/engine"
	"github.com/gluebox/gluebox/appliance/gitops/state"
)

// newRepoCmd returns `gluebox repo`: the deployment-configurations repository gluebox follows.
func newRepoCmd(g *globals) *cobra.Command {
	repo := &cobra.Command{Use: "repo", Short: "The deployment-configurations repository gluebox follows"}
	var req engine.SetRepoRequest
	set := &cobra.Command{
		Use:   "set-config <url>",
		Short: "Follow this deployment-configurations repository (checked before it is saved)",
		Long: "Follow the repository at URL (https://, ssh://, user@host:path or a local path).\n" +
			"Credentials name a secret-store path holding token, or username + password, or ssh-key + known_hosts;\n" +
			"set them first with `gluebox secret set secret/git/<name> token=...`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.URL = args[0]
			st, err := g.api().SetRepo(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "following %s (branch %s) at %s\n", st.URL, orDefault(st.Branch, "default"), short(st.Commit))
			return nil
		},
	}
	set.Flags().StringVar(&req.Branch, "branch", "", "branch to follow (default: the remote's default branch)")
	set.Flags().StringVar(&req.Credentials, "credentials", "", "secret-store path of the credentials, e.g. secret/git/acme")
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the repository, the commit seen and synced, and the webhook endpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := g.api().Repo(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if v.Config.URL == "" {
				fmt.Fprintln(w, "repository:\tnone (gluebox repo set-config URL)")
			} else {
				src := "gluebox repo set-config"
				if v.FromConfigFile {
					src = "config file"
				}
				fmt.Fprintf(w, "repository:\t%s (%s)\n", v.Config.URL, src)
				fmt.Fprintf(w, "branch:\t%s\n", orDefault(v.Config.Branch, "remote default"))
				if v.Config.Credentials != "" {
					fmt.Fprintf(w, "credentials:\t%s\n", v.Config.Credentials)
				}
				fmt.Fprintf(w, "head:\t%s (checked %s)\n", short(v.Status.Commit), ago(v.Status.LastCheckAt))
				fmt.Fprintf(w, "synced:\t%s (%s)\n", short(v.Status.Synced), ago(v.Status.LastSyncAt))
				if v.Status.LastError != "" {
					fmt.Fprintf(w, "error:\t%s (%s)\n", v.Status.LastError, ago(v.Status.LastErrorAt))
				}
			}
			fmt.Fprintf(w, "poll interval:\t%s\n", v.PollInterval)
			fmt.Fprintf(w, "webhook:\thttp(s)://<this host>%s (GitHub, GitLab, Gitea, Forgejo)\n", v.WebhookPath)
			fmt.Fprintf(w, "webhook secret:\t%s\n", v.WebhookSecret)
			return w.Flush()
		},
	}
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Check the repository and re-apply every environment now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.api().SyncRepo(cmd.Context())
		},
	}
	repo.AddCommand(set, show, sync)
	return repo
}

// newRoutesCmd returns `gluebox routes`: what the front door serves.
func newRoutesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "routes",
		Short: "List the host names and paths the front door serves, from apps' Ingresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := g.api().Routes(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "HOST\tPATH\tBACKEND\tINGRESS\tTLS")
			for _, r := range v.Routes {
				host := r.Host
				if r.Default {
					host = "(default)"
				}
				backend := r.Service + ":" + r.Port
				if r.Resource != "" {
					backend = r.Resource
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s/%s\t%v\n", orDefault(host, "*"), r.Path, backend, r.Namespace, r.Ingress, r.TLS)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if v.CAFile != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "\nHTTPS certificates are issued by the CA in %s (trust it on clients)\n", v.CAFile)
			}
			return nil
		},
	}
}

// newAppStatusCmds returns `app list`, `app show`, `app rollback`, `app release` and
// `app manifest`.
func newAppStatusCmds(g *globals) []*cobra.Command {
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List every environment with its commit, health and hold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			envs, err := g.api().Apps(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), envs)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "APP\tENV\tNAMESPACE\tCOMMIT\tREV\tHEALTH\tSTATE\tAPPLIED")
			for _, e := range envs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.App, e.Env, e.Namespace, short(e.Commit), e.Revision, e.Health, envState(e), ago(e.LastAppliedAt))
			}
			return w.Flush()
		},
	}
	show := &cobra.Command{
		Use:   "show <app> <env>",
		Short: "Show one environment: status, last error, drift and history",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := g.api().App(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), v)
			}
			printEnv(cmd.OutOrStdout(), v)
			return nil
		},
	}
	for _, c := range []*cobra.Command{list, show} {
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	var to int
	rollback := &cobra.Command{
		Use:   "rollback <app> <env>",
		Short: "Re-apply an earlier revision and hold the environment there until the next change in Git or `app release`",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.api().Rollback(cmd.Context(), args[0], args[1], engine.RollbackRequest{To: to})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s now runs commit %s as revision %d, held (gluebox app release %s %s to follow Git again)\n",
				e.App, e.Env, short(e.Commit), e.Revision, e.App, e.Env)
			return nil
		},
	}
	rollback.Flags().IntVar(&to, "to", 0, "revision to return to (default: the previous one; see `app show`)")
	release := &cobra.Command{
		Use:   "release <app> <env>",
		Short: "Lift a rollback hold: the environment follows Git again at once",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.api().Release(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s released; syncing with Git\n", args[0], args[1])
			return nil
		},
	}
	var rev int
	manifest := &cobra.Command{
		Use:   "manifest <app> <env>",
		Short: "Print the manifest applied by a revision (default: the running one)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := rev
			if n == 0 {
				v, err := g.api().App(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				n = v.Revision
			}
			return g.api().Manifest(cmd.Context(), args[0], args[1], n, cmd.OutOrStdout())
		},
	}
	manifest.Flags().IntVar(&rev, "revision", 0, "revision number (see `app show`)")
	return []*cobra.Command{list, show, rollback, release, manifest}
}

func envState(e state.Env) string {
	var parts []string
	if e.Held {
		parts = append(parts, "held")
	}
	if e.LastError != "" {
		parts = append(parts, "error")
	}
	if len(e.Drift) > 0 && time.Since(e.DriftAt) < time.Hour {
		parts = append(parts, "drift-healed")
	}
	if len(parts) == 0 {
		return "synced"
	}
	return strings.Join(parts, ",")
}

func printEnv(out io.Writer, ev engine.EnvView) {
	v := ev.Env
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "environment:\t%s/%s (namespace %s, %s)\n", v.App, v.Env, v.Namespace, orDefault(v.Source, "not rendered"))
	fmt.Fprintf(w, "running:\trevision %d, commit %s, %s (applied %s)\n", v.Revision, short(v.Commit), v.Digest, ago(v.LastAppliedAt))
	if v.Image != "" {
		fmt.Fprintf(w, "image:\t%s\n", v.Image)
	}
	health := v.Health
	if v.HealthMessage != "" {
		health += ": " + v.HealthMessage
	}
	fmt.Fprintf(w, "health:\t%s\n", health)
	if v.Held {
		fmt.Fprintf(w, "held:\tyes, by a rollback; Git renders %s (gluebox app release %s %s)\n", v.GitDigest, v.App, v.Env)
	}
	if v.LastError != "" {
		fmt.Fprintf(w, "last error:\t%s (%s; the running version was kept)\n", v.LastError, ago(v.LastErrorAt))
	}
	if len(v.Drift) > 0 {
		fmt.Fprintf(w, "drift:\t%s put back %s\n", strings.Join(v.Drift, ", "), ago(v.DriftAt))
	}
	fmt.Fprintf(w, "last sync:\t%s\n", ago(v.LastSyncAt))
	w.Flush()
	fmt.Fprintln(out, "\nhistory:")
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "REV\tCOMMIT\tDIGEST\tREASON\tAPPLIED\tIMAGE")
	for _, r := range ev.History {
		mark := ""
		if r.N == v.Revision {
			mark = " *"
		}
		fmt.Fprintf(w, "%d%s\t%s\t%s\t%s\t%s\t%s\n", r.N, mark, short(r.Commit), shortDigest(r.Digest), r.Reason, r.AppliedAt.Local().Format(time.DateTime), shortImage(r.Image))
	}
	w.Flush()
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	if sha == "" {
		return "-"
	}
	return sha
}

// shortImage shortens the digest of an image reference for tables.
func shortImage(img string) string {
	if i := strings.Index(img, "@sha256:"); i >= 0 && len(img) > i+20 {
		return img[:i+20]
	}
	return orDefault(img, "-")
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
