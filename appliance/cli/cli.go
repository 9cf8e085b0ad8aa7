// Package cli is gluebox's command line: every sub-command and its flags are wired here and
// nowhere else. Commands that need a running server talk to it through appliance/api over the
// data dir's unix socket. Only cmd/gluebox imports it.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"

	gbembed "github.com/gluebox/gluebox/embed"

	"github.com/gluebox/gluebox/appliance/cleanup"
	"github.com/gluebox/gluebox/appliance/client"
	"github.com/gluebox/gluebox/appliance/config"
	"github.com/gluebox/gluebox/appliance/hostcheck"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/server"
	"github.com/gluebox/gluebox/appliance/version"
)

// Main runs the gluebox command line with args (without the program name) and returns the
// process exit code.
func Main(args []string) int {
	root := NewRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "gluebox:", err)
		return 1
	}
	return 0
}

// Kubectl runs the embedded kubectl with args against this host's cluster, unless KUBECONFIG or
// --kubeconfig says otherwise.
func Kubectl(args []string) int {
	kubeconfig := ""
	if l, err := paths.FromEnv(); err == nil {
		kubeconfig = l.KubeconfigAdmin()
	}
	return runKubectl(args, kubeconfig)
}

// runKubectl runs the embedded kubectl with args, against kubeconfig unless KUBECONFIG or
// --kubeconfig says otherwise.
func runKubectl(args []string, kubeconfig string) int {
	args = kubectlArgs(args, os.Getenv("KUBECONFIG"), kubeconfig)
	os.Args = append([]string{"kubectl"}, args...)
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		return 1
	}
	return 0
}

// kubectlArgs puts --kubeconfig=kubeconfig before args unless the caller chose a kubeconfig
// already: in the environment (env, $KUBECONFIG) or with --kubeconfig among args. The flag,
// rather than setting KUBECONFIG for the whole process, keeps the choice to this one command.
func kubectlArgs(args []string, env, kubeconfig string) []string {
	if env != "" || kubeconfig == "" {
		return args
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return args
		}
	}
	return append([]string{"--kubeconfig=" + kubeconfig}, args...)
}

type globals struct {
	dataDir string
}

func (g *globals) layout() (paths.Layout, error) { return paths.New(g.dataDir) }

// takeDataDir applies a leading --data-dir to g and returns the other arguments: commands that
// pass their arguments through unparsed (kubectl, ctr) get gluebox's global flag among them.
func (g *globals) takeDataDir(args []string) []string {
	for len(args) > 0 {
		switch {
		case args[0] == "--data-dir" && len(args) > 1:
			g.dataDir, args = args[1], args[2:]
		case strings.HasPrefix(args[0], "--data-dir="):
			g.dataDir, args = strings.TrimPrefix(args[0], "--data-dir="), args[1:]
		default:
			return args
		}
	}
	return args
}

// api returns the typed client of the selected instance's local API; it is called when a
// command runs, so --data-dir is parsed first.
func (g *globals) api() *client.Client { return client.New(g.socket()) }

func (g *globals) socket() string {
	l, err := g.layout()
	if err != nil {
		return ""
	}
	return l.Socket()
}

// NewRoot returns the root command with every sub-command.
func NewRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gluebox",
		Short:         "gluebox turns this host into a GitOps application platform",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	def := os.Getenv("GLUEBOX_DATA_DIR")
	if def == "" {
		def = paths.DefaultDataDir
	}
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", def, "data dir of the gluebox instance (GLUEBOX_DATA_DIR)")
	root.AddCommand(
		newServerCmd(),
		newKubectlCmd(g),
		newCtrCmd(g),
		newStatusCmd(g),
		newCheckCmd(g),
		newVersionCmd(),
		newCleanupCmd(g),
		newAppCmd(g),
		newRepoCmd(g),
		newRoutesCmd(g),
		newMetricsCmd(g),
		newLogsCmd(g),
		newAlertsCmd(g),
		newImageCmd(g),
		newBuildCmd(g),
		newPreviewsCmd(g),
		newConsoleCmd(g),
		newRegistryCmd(g),
		newSecretCmd(g),
		newBackupCmd(g),
	)
	return root
}

func newServerCmd() *cobra.Command {
	var cfg config.Server
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Boot the whole platform on this host and serve until SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			required := fs.Changed("config")
			if err := config.LoadFile(fs, cfgFile, required); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			srv, err := server.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return srv.Run(ctx)
		},
	}
	// server owns --data-dir itself (it is also a config key), shadowing the global one.
	cfg.BindFlags(cmd.Flags())
	cmd.Flags().StringVar(&cfgFile, "config", config.DefaultFile, "configuration file; its keys are this command's flag names")
	return cmd
}

func newKubectlCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl [args...]",
		Short:              "Run the embedded kubectl against this host's cluster",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			args = g.takeDataDir(args)
			l, err := g.layout()
			if err != nil {
				return err
			}
			if code := runKubectl(args, l.KubeconfigAdmin()); code != 0 {
				os.Exit(code) // kubectl has printed its error
			}
			return nil
		},
	}
}

func newCtrCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "ctr [args...]",
		Short:              "Run the bundled containerd client against this node (namespace k8s.io)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			args = g.takeDataDir(args)
			l, err := g.layout()
			if err != nil {
				return err
			}
			bin := l.Join("bin", "current", "bin", "ctr")
			if _, err := os.Stat(bin); err != nil {
				return fmt.Errorf("no bundled ctr at %s: start `gluebox server` once to extract it", bin)
			}
			c := exec.Command(bin, append([]string{"--address", l.ContainerdSocket(), "--namespace", "k8s.io"}, args...)...)
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			if err := c.Run(); err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					os.Exit(ee.ExitCode())
				}
				return err
			}
			return nil
		},
	}
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the health of every component of the running server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.api().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "phase:\t%s\n", st.Phase)
			fmt.Fprintf(w, "node:\t%s (%s)\n", st.Node, st.NodeIP)
			fmt.Fprintf(w, "data dir:\t%s\n", st.DataDir)
			fmt.Fprintf(w, "uptime:\t%s\n", st.Uptime)
			if st.BootTime != "" {
				fmt.Fprintf(w, "boot to node Ready:\t%s\n", st.BootTime)
			}
			fmt.Fprintf(w, "kubernetes API:\t%s (kubeconfig %s)\n", st.APIServer, st.Kubeconfig)
			if st.LastError != "" {
				fmt.Fprintf(w, "last error:\t%s\n", st.LastError)
			}
			if r := st.Registry; r != nil {
				fmt.Fprintf(w, "registry:\t%s, %d repositories, %.1f MB stored\n", r.Addr, r.Repositories, float64(r.StorageBytes)/1e6)
			}
			if sec := st.Secrets; sec != nil {
				verified := sec.NewestVerifiedAge
				if verified == "" {
					verified = "none yet"
				}
				fmt.Fprintf(w, "secrets:\t%d paths, newest verified backup: %s\n", sec.Secrets, verified)
				if sec.LastBackupError != "" {
					fmt.Fprintf(w, "backup error:\t%s\n", sec.LastBackupError)
				}
			}
			for _, c := range st.Components {
				if c.Degraded() {
					fmt.Fprintf(w, "degraded:\t%s (restarted %d times): %s\n", c.Name, c.Restarts, c.Error)
				}
			}
			fmt.Fprintln(w, "\nCOMPONENT\tSTATE\tSINCE\tRESTARTS\tERROR")
			for _, c := range st.Components {
				name := c.Name
				if c.Critical {
					name += " (critical)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", name, c.State, c.Since.Format("15:04:05"), c.Restarts, c.Error)
			}
			fmt.Fprintln(w, "\nCHILD\tSTATE\tPID\tRESTARTS\tMEMORY\tCPU LIMIT\tOOM KILLS")
			for _, c := range st.Children {
				mem, cpu := "-", "-"
				switch {
				case c.MemoryLimit > 0:
					mem = fmt.Sprintf("%d/%d MiB", c.MemoryUsage>>20, c.MemoryLimit>>20)
				case c.MemoryUsage > 0:
					mem = fmt.Sprintf("%d MiB", c.MemoryUsage>>20)
				}
				if c.CPULimit > 0 {
					cpu = strconv.FormatFloat(c.CPULimit, 'f', -1, 64) + " cores"
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%d\n", c.Name, c.State, c.PID, c.Restarts, mem, cpu, c.OOMKills)
			}
			fmt.Fprintln(w)
			keys := make([]string, 0, len(st.Versions))
			for k := range st.Versions {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "%s\t%s\n", k, st.Versions[k])
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newCheckCmd(g *globals) *cobra.Command {
	var asJSON bool
	var apiPort int
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Pre-flight: check kernel features, cgroups, binaries, ports and disk",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.layout()
			if err != nil {
				return err
			}
			rep := hostcheck.Run(hostcheck.Options{DataDir: l.Root(), Ports: []hostcheck.Port{
				{Addr: fmt.Sprintf(":%d", apiPort), Flag: "--api-port", Why: "Kubernetes API"},
				{Addr: ":10250", Why: "kubelet"},
			}})
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				for _, r := range rep {
					mark := "ok  "
					if !r.OK && r.Warning {
						mark = "warn"
					} else if !r.OK {
						mark = "FAIL"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s  %-24s %s\n", mark, r.Name, r.Detail)
				}
			}
			if err := rep.Err(); err != nil {
				return fmt.Errorf("this host cannot run gluebox yet (see FAIL lines)")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&apiPort, "api-port", 6443, "Kubernetes API port to check")
	return cmd
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of gluebox and its embedded components",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Info()
			keys := make([]string, 0, len(info))
			for k := range info {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", k, info[k])
			}
			for _, line := range bundledVersions() {
				fmt.Fprintln(cmd.OutOrStdout(), line)
			}
			return nil
		},
	}
}

func newCleanupCmd(g *globals) *cobra.Command {
	var purge, keepIPTables bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Stop every container and helper of an instance and remove its mounts, bridge and iptables rules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.layout()
			if err != nil {
				return err
			}
			if _, err := os.Stat(l.Root()); err != nil {
				return fmt.Errorf("no gluebox data dir at %s", l.Root())
			}
			unlock, err := server.LockDataDir(l)
			if err != nil {
				return err
			}
			defer unlock()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return cleanup.Run(cleanup.Options{Layout: l, Purge: purge, KeepIPTables: keepIPTables, Log: log})
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the data dir (all cluster state, images and volumes)")
	cmd.Flags().BoolVar(&keepIPTables, "keep-iptables", false, "leave KUBE-*/CNI-* iptables chains (another node on this host uses them)")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// bundledVersions lists the bundled programs' versions, recorded when the bundle was built.
func bundledVersions() []string {
	return strings.Split(strings.TrimSpace(gbembed.Versions()), "\n")
}
