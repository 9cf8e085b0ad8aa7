package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"text/tabwriter"

	"github.com/gluebox/gluebox/appliance/api"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
)

// Register adds the registry's local API routes to mux:
//
//	GET  /v1/registry/status        Status
//	GET  /v1/registry/repositories  []RepoInfo (tags and sizes)
//	POST /v1/registry/gc            GCOptions → Report
func (r *Registry) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/registry/status", func(w http.ResponseWriter, req *http.Request) {
		st, err := r.Status(req.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET /v1/registry/repositories", func(w http.ResponseWriter, req *http.Request) {
		list, err := r.List(req.Context())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST /v1/registry/gc", func(w http.ResponseWriter, req *http.Request) {
		var opts GCOptions
		if req.ContentLength != 0 {
			if err := api.DecodeJSON(req, 1<<20, &opts); err != nil {
				api.WriteError(w, err)
				return
			}
		}
		for _, d := range opts.Keep {
			if err := d.Validate(); err != nil {
				api.WriteError(w, api.Errorf(http.StatusBadRequest, "cannot keep %q: not a digest: %v", d, err))
				return
			}
		}
		rep, err := r.GC(req.Context(), opts)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, rep)
	})
}

// NewCommands returns the `registry` command with its `list` and `gc` sub-commands; client opens
// the API of the selected instance.
func NewCommands(client func() *api.Client) []*cobra.Command {
	root := &cobra.Command{Use: "registry", Short: "Inspect and clean the built-in OCI registry"}

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List repositories with their tags and sizes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var repos []RepoInfo
			if err := client().Do(cmd.Context(), http.MethodGet, "/v1/registry/repositories", nil, &repos); err != nil {
				return fmt.Errorf("cannot list repositories: %w", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), repos)
			}
			return printRepos(cmd.OutOrStdout(), repos)
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var opts GCOptions
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
			var rep Report
			if err := client().Do(cmd.Context(), http.MethodPost, "/v1/registry/gc", opts, &rep); err != nil {
				return fmt.Errorf("cannot garbage-collect registry: %w", err)
			}
			if gcJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			verb := "deleted"
			if rep.DryRun {
				verb = "would delete"
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %d manifests (%d tags) and %d blobs, %s freed, in %s; %d blobs kept, %d spared as too young\n",
				verb, rep.ManifestsDeleted, rep.TagsDeleted, rep.BlobsDeleted, humanBytes(rep.BytesFreed), rep.Duration, rep.BlobsKept, rep.BlobsTooYoung)
			return err
		},
	}
	gc.Flags().IntVar(&opts.KeepLast, "keep-last", 0, "newest manifests to keep per repository (0: server default)")
	gc.Flags().StringSliceVar(&keep, "keep", nil, "digest to keep in every repository (repeatable)")
	gc.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be deleted, delete nothing")
	gc.Flags().BoolVar(&gcJSON, "json", false, "print the report as JSON")

	root.AddCommand(list, gc)
	return []*cobra.Command{root}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printRepos(w io.Writer, repos []RepoInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE")
	for _, r := range repos {
		if len(r.Tags) == 0 {
			fmt.Fprintf(tw, "%s\t<none>\t%d manifests\t%s\n", r.Name, r.Manifests, humanBytes(r.Size))
			continue
		}
		for _, t := range r.Tags {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, t.Name, shortDigest(t.Digest), humanBytes(t.Size))
		}
	}
	return tw.Flush()
}

func shortDigest(d digest.Digest) string {
	s := d.String()
	if i := len(d.Algorithm().String()) + 1 + 12; len(s) > i {
		return s[:i]
	}
	return s
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
