package cli

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/client"
	"github.com/gluebox/gluebox/appliance/secrets"
)

// newSecretCmd returns `gluebox secret`: the encrypted secret store, and the Kubernetes Secrets
// bound to its paths.
func newSecretCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "secret",
		Short: "Manage the encrypted secret store",
		Long: `Manage the encrypted secret store. Paths look like secret/<app>; each holds key/value pairs
with kept versions. Values are sealed with age; the identity file in the data dir's secrets
directory is the only way to read them: keep a copy of it off this host.`,
	}
	ctx := func(cmd *cobra.Command) context.Context { return cmd.Context() }

	set := &cobra.Command{
		Use:   "set <path> <key> [value | -]",
		Short: "Set one key; the value comes from stdin when it is - or missing",
		Example: `  gluebox secret set secret/my-app DATABASE_URL -  < db-url.txt
  printf %s "$TOKEN" | gluebox secret set secret/my-app API_TOKEN`,
		Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var value string
			if len(args) == 3 && args[2] != "-" {
				value = args[2]
			} else {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), secrets.MaxValueSize+1))
				if err != nil {
					return fmt.Errorf("cannot read value from stdin: %w", err)
				}
				value = strings.TrimSuffix(string(b), "\n")
			}
			req := secrets.SetRequest{Values: map[string]string{args[1]: value}, By: who()}
			ans, err := g.api().SetSecret(ctx(cmd), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s set (version %d)\n", ans.Path, args[1], ans.Version)
			return nil
		},
	}

	var getVersion uint64
	var getJSON bool
	get := &cobra.Command{
		Use:   "get <path> [key]",
		Short: "Print one value, or every key=value of a path",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := client.SecretOptions{Version: getVersion}
			if len(args) == 2 {
				o.Key = args[1]
			}
			ans, err := g.api().Secret(ctx(cmd), args[0], o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if getJSON {
				return printJSON(out, ans)
			}
			if len(args) == 2 {
				if v, ok := ans.Values[args[1]]; ok {
					fmt.Fprintln(out, v)
					return nil
				}
				b, err := base64.StdEncoding.DecodeString(ans.ValuesBase64[args[1]])
				if err != nil {
					return fmt.Errorf("cannot decode value: %w", err)
				}
				_, err = out.Write(b)
				return err
			}
			for _, k := range slices.Sorted(maps.Keys(ans.Values)) {
				fmt.Fprintf(out, "%s=%s\n", k, strconv.Quote(ans.Values[k]))
			}
			for _, k := range slices.Sorted(maps.Keys(ans.ValuesBase64)) {
				fmt.Fprintf(out, "%s (base64)=%s\n", k, ans.ValuesBase64[k])
			}
			return nil
		},
	}
	get.Flags().Uint64Var(&getVersion, "version", 0, "read this kept version instead of the newest")
	get.Flags().BoolVar(&getJSON, "json", false, "print the answer as JSON")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list [prefix]",
		Short: "List paths (names and keys, never values)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			ans, err := g.api().Secrets(ctx(cmd), prefix)
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(cmd.OutOrStdout(), ans)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PATH\tVERSION\tUPDATED\tBY\tKEYS")
			for _, p := range ans {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", p.Path, p.Version, p.Updated.Local().Format(time.DateTime), p.By, strings.Join(p.Keys, ","))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print the answer as JSON")

	del := &cobra.Command{
		Use:   "delete <path> [key...]",
		Short: "Delete keys of a path, or the whole path (with its history) when no key is given",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ans, err := g.api().DeleteSecret(ctx(cmd), args[0], args[1:], who())
			if err != nil {
				return err
			}
			if len(args) > 1 {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s from %s (version %d)\n", strings.Join(args[1:], ", "), args[0], ans.Version)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			}
			return nil
		},
	}

	history := &cobra.Command{
		Use:   "history <path>",
		Short: "List the kept versions of a path",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ans, err := g.api().SecretHistory(ctx(cmd), args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERSION\tTIME\tBY\tOP\tCHANGED\tKEYS")
			for _, v := range ans {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", v.Version, v.Time.Local().Format(time.DateTime), v.By, v.Op, strings.Join(v.Changed, ","), strings.Join(v.Keys, ","))
			}
			return tw.Flush()
		},
	}

	rollback := &cobra.Command{
		Use:   "rollback <path> <version>",
		Short: "Make an older version the newest one again",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.ParseUint(args[1], 10, 64)
			if err != nil || v == 0 {
				return fmt.Errorf("version %q is not a positive number: see `gluebox secret history %s`", args[1], args[0])
			}
			ans, err := g.api().RollbackSecret(ctx(cmd), args[0], secrets.RollbackRequest{Version: v, By: who()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s rolled back to version %d (now version %d)\n", args[0], v, ans.Version)
			return nil
		},
	}

	var importFormat string
	var importReplace bool
	imp := &cobra.Command{
		Use:   "import <path> <file | ->",
		Short: "Import keys from a .env file or a JSON object (- reads stdin)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			name := args[1]
			if name == "-" {
				name = "stdin"
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), secrets.MaxImportSize+1))
			} else {
				data, err = os.ReadFile(name)
			}
			if err != nil {
				return fmt.Errorf("cannot read %s: %w", name, err)
			}
			// Parse here too, so mistakes are reported before anything is sent.
			if _, err := secrets.ParseImport(name, importFormat, data); err != nil {
				return err
			}
			req := secrets.ImportRequest{Path: args[0], Format: importFormat, Name: filepath.Base(name), Data: string(data), Replace: importReplace, By: who()}
			ans, err := g.api().ImportSecrets(ctx(cmd), req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d keys into %s (version %d): %s\n", len(ans.Keys), ans.Path, ans.Version, strings.Join(ans.Keys, ", "))
			return nil
		},
	}
	imp.Flags().StringVar(&importFormat, "format", "", `"env" or "json" (default: guess from the content)`)
	imp.Flags().BoolVar(&importReplace, "replace", false, "remove keys of the path that the file does not set")

	var rotateYes bool
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Re-seal every value under a new identity",
		Long: `Re-seal every value (and every kept version) under a newly generated age identity, in one
transaction. The old identity is kept under the secrets directory's retired/ folder so existing
backups stay restorable. Copy the new identity file off this host afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !rotateYes {
				return errors.New("rotate-key replaces the identity file: copy the new one off this host afterwards, and pass --yes to go ahead")
			}
			ans, err := g.api().RotateKey(ctx(cmd), secrets.ByRequest{By: who()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated: values are now sealed to %s\ncopy the new identity file off this host\n", ans.Recipient)
			return nil
		},
	}
	rotate.Flags().BoolVar(&rotateYes, "yes", false, "confirm the rotation")

	var auditLimit int
	audit := &cobra.Command{
		Use:   "audit",
		Short: "Show who changed what (never values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ans, err := g.api().SecretsAudit(ctx(cmd), auditLimit)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tBY\tOP\tPATH\tVERSION\tKEYS")
			for _, e := range ans {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.Time.Local().Format(time.DateTime), e.By, e.Op, e.Path, e.Version, strings.Join(e.Keys, ","))
			}
			return tw.Flush()
		},
	}
	audit.Flags().IntVar(&auditLimit, "limit", 50, "how many entries to show")

	root.AddCommand(set, get, list, del, history, rollback, imp, rotate, audit)
	root.AddCommand(newSecretBindCmds(g)...)
	return root
}

// newBackupCmd returns `gluebox backup`: snapshots of the secret store.
func newBackupCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "backup",
		Short: "Create, list, verify and restore encrypted snapshots of the secret store",
	}
	create := &cobra.Command{
		Use:   "create",
		Short: "Take a backup now (it is verified before this returns)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.api().CreateBackup(cmd.Context(), secrets.ByRequest{By: who()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s written and verified (%d bytes, %d secrets, sha256 %s)\n", m.File, m.Size, m.Secrets, m.SHA256)
			return nil
		},
	}
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List backups, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ans, err := g.api().Backups(cmd.Context())
			if err != nil {
				return err
			}
			if listJSON {
				return printJSON(cmd.OutOrStdout(), ans)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tCREATED\tSIZE\tSECRETS\tVERIFIED")
			for _, m := range ans {
				verified := "never"
				if !m.Verified.IsZero() {
					verified = m.Verified.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", m.File, m.Created.Local().Format(time.DateTime), m.Size, m.Secrets, verified)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print the answer as JSON")
	verify := &cobra.Command{
		Use:   "verify <file>",
		Short: "Open a backup in a scratch location and check that every value decrypts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := g.api().VerifyBackup(cmd.Context(), secrets.BackupFileRequest{File: backupArg(args[0])})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s is good: %d secrets, %d values decrypted, taken %s\n", rep.File, rep.Secrets, rep.Values, rep.Created.Local().Format(time.DateTime))
			return nil
		},
	}
	var restoreYes bool
	restore := &cobra.Command{
		Use:   "restore <file>",
		Short: "Replace the secret store with a backup (verified first; the old store is kept aside)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !restoreYes {
				return errors.New("restore replaces every secret with the backup's content (the current store is kept aside): pass --yes to go ahead")
			}
			rep, err := g.api().RestoreBackup(cmd.Context(), secrets.BackupFileRequest{File: backupArg(args[0]), By: who()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %d secrets from %s; the replaced store is at %s\n", rep.Secrets, rep.File, rep.KeptAside)
			return nil
		},
	}
	restore.Flags().BoolVar(&restoreYes, "yes", false, "confirm the restore")
	root.AddCommand(create, list, verify, restore)
	return root
}

// backupArg makes a file argument absolute when it names a local file, since the server's
// working directory is not the caller's; a bare name is looked up in the backups dir.
func backupArg(arg string) string {
	if filepath.Base(arg) == arg {
		if _, err := os.Stat(arg); err != nil {
			return arg
		}
	}
	if abs, err := filepath.Abs(arg); err == nil {
		return abs
	}
	return arg
}
