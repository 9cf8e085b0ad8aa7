package cli

import (
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/alerts"
)

// newAlertsCmd returns `gluebox alerts`: list alerts, silence them, show the rules.
func newAlertsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Firing alerts, silences and alert rules"}
	var match []string
	list := &cobra.Command{
		Use:   "list",
		Short: "List firing alerts (silenced ones marked)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			as, err := g.api().Alerts(cmd.Context(), match)
			if err != nil {
				return err
			}
			sort.Slice(as, func(i, j int) bool { return as[i].StartsAt.Before(as[j].StartsAt) })
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ALERT\tSEVERITY\tSTATE\tSINCE\tSUMMARY")
			for _, a := range as {
				if a.Labels["alertname"] == "GlueboxHeartbeat" {
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.Labels["alertname"], a.Labels["severity"], a.Status.State,
					time.Since(a.StartsAt).Round(time.Second), a.Annotations["summary"])
			}
			return w.Flush()
		},
	}
	list.Flags().StringArrayVar(&match, "match", nil, "only alerts matching label=value (or !=, =~, !~; repeatable)")
	var req alerts.SilenceRequest
	silence := &cobra.Command{
		Use:   "silence <matcher>...",
		Short: "Silence the alerts matching every matcher (e.g. alertname=PodCrashLooping app=web) for --for",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Matchers = args
			if req.CreatedBy == "" {
				req.CreatedBy = who()
			}
			out, err := g.api().Silence(cmd.Context(), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "silence %s until %s\n", out.ID, time.Now().Add(req.Duration).Format(time.DateTime))
			return nil
		},
	}
	silence.Flags().DurationVar(&req.Duration, "for", 2*time.Hour, "how long")
	silence.Flags().StringVar(&req.Comment, "comment", "silenced with gluebox alerts silence", "why")
	silences := &cobra.Command{
		Use:   "silences",
		Short: "List silences",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ss, err := g.api().Silences(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tSTATE\tMATCHERS\tENDS\tBY\tCOMMENT")
			for _, s := range ss {
				var ms []string
				for _, m := range s.Matchers {
					ms = append(ms, m.String())
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Status.State, strings.Join(ms, ","), s.EndsAt.Local().Format(time.DateTime), s.CreatedBy, s.Comment)
			}
			return w.Flush()
		},
	}
	unsilence := &cobra.Command{
		Use:   "unsilence <id>",
		Short: "Expire a silence now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := g.api().ExpireSilence(cmd.Context(), args[0])
			return err
		},
	}
	rules := &cobra.Command{
		Use:   "rules",
		Short: "List the default and platform.yaml alert rules, and the platform.yaml rules left out with why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.api().AlertRules(cmd.Context())
			if err != nil {
				return err
			}
			sort.Strings(st.Default)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "default rules: %s\n", strings.Join(st.Default, ", "))
			fmt.Fprintf(out, "platform.yaml rules: %s\n", orDefault(strings.Join(st.User, ", "), "none"))
			fmt.Fprintf(out, "receivers: %s\n", orDefault(strings.Join(st.Receivers, ", "), "none (set --alert-webhook-url, --alert-slack-url or --alert-email-to)"))
			for _, d := range st.Dropped {
				fmt.Fprintf(out, "left out: %s\n", d)
			}
			return nil
		},
	}
	cmd.AddCommand(list, silence, silences, unsilence, rules)
	return cmd
}

// who names the person running the CLI, for silences and the secret store's audit log.
func who() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "cli"
}
