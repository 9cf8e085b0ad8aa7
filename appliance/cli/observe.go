package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/logs"
	"github.com/gluebox/gluebox/appliance/metrics"
)

// newMetricsCmd returns `gluebox metrics`: PromQL/MetricsQL over the bundled VictoriaMetrics.
func newMetricsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "metrics", Short: "Query the metrics store (PromQL / MetricsQL)"}
	var at string
	var asJSON bool
	query := &cobra.Command{
		Use:   "query <expr>",
		Short: "Evaluate an expression now (or at --time) and print one line per series",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := g.api().MetricsQuery(cmd.Context(), metrics.QueryRequest{Query: args[0], Time: at})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printSeries(cmd.OutOrStdout(), res)
			return nil
		},
	}
	query.Flags().StringVar(&at, "time", "", "evaluation time, RFC 3339 or Unix seconds (default now)")
	query.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var since, step time.Duration
	rng := &cobra.Command{
		Use:   "range <expr>",
		Short: "Evaluate an expression over the last --since at every --step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			end := time.Now()
			req := metrics.RangeRequest{Query: args[0], Start: end.Add(-since), End: end, Step: step}
			res, err := g.api().MetricsQueryRange(cmd.Context(), req)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			printSeries(cmd.OutOrStdout(), res)
			return nil
		},
	}
	rng.Flags().DurationVar(&since, "since", time.Hour, "how far back")
	rng.Flags().DurationVar(&step, "step", time.Minute, "resolution")
	rng.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(query, rng)
	return cmd
}

func printSeries(w io.Writer, res metrics.Result) {
	for _, s := range res.Series {
		keys := make([]string, 0, len(s.Labels))
		for k := range s.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString(s.Labels["__name__"])
		b.WriteString("{")
		first := true
		for _, k := range keys {
			if k == "__name__" {
				continue
			}
			if !first {
				b.WriteString(", ")
			}
			first = false
			fmt.Fprintf(&b, "%s=%q", k, s.Labels[k])
		}
		b.WriteString("}")
		for _, p := range s.Samples {
			fmt.Fprintf(w, "%s %v @%s\n", b.String(), p.Value, p.Time.Local().Format(time.DateTime))
		}
	}
}

// newLogsCmd returns `gluebox logs <app> <env>`.
func newLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var since time.Duration
	var grep, query string
	var limit int
	cmd := &cobra.Command{
		Use:   "logs [<app> <env>]",
		Short: "Print (or follow with -f) the logs of an environment's containers",
		Long:  "Print the newest log lines of every container of environment <app>-<env> (or of all, without arguments).\n--grep filters by a phrase; --query adds any LogsQL filter.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return fmt.Errorf("give an app and an env, or nothing for every container")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := logs.Request{Grep: grep, Query: query, Since: since}
			if len(args) == 2 {
				req.App, req.Env = args[0], args[1]
			}
			out := cmd.OutOrStdout()
			if follow {
				return g.api().TailLogs(cmd.Context(), req, func(l logs.LogLine) error {
					printLogLine(out, l, len(args) == 0)
					return nil
				})
			}
			req.Limit = limit
			lines, err := g.api().Logs(cmd.Context(), req)
			if err != nil {
				return err
			}
			for _, l := range lines {
				printLogLine(out, l, len(args) == 0)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	f.DurationVar(&since, "since", time.Hour, "how far back to start")
	f.StringVar(&grep, "grep", "", "only lines containing this phrase")
	f.StringVar(&query, "query", "", "extra LogsQL filter")
	f.IntVar(&limit, "limit", 1000, "at most this many lines (newest)")
	return cmd
}

func printLogLine(w io.Writer, l logs.LogLine, withNamespace bool) {
	src := l.Pod + "/" + l.Container
	if withNamespace {
		src = l.Namespace + "/" + src
	}
	fmt.Fprintf(w, "%s %s %s\n", l.Time.Local().Format("2006-01-02T15:04:05.000"), src, l.Msg)
}
