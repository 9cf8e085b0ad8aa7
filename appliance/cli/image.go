package cli

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/gluebox/gluebox/appliance/ociimage"
)

// newImageCmd returns `gluebox image import`: put an image tarball into the built-in registry,
// so Dockerfiles' FROM lines and pods find it offline.
func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Images in the built-in registry"}
	var as string
	imp := &cobra.Command{
		Use:   "import <tarball>",
		Short: "Push a `docker save` tarball or an OCI archive to the built-in registry",
		Long: "Push the image of a `docker save` tarball or an OCI image-layout archive to the built-in\n" +
			"registry, under its own name (registry host dropped) or --as repo/name:tag. Pods pull it as\n" +
			"registry.gluebox.local/<repo>/<name>:<tag>, and builds resolve FROM <repo>/<name>:<tag> through it.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.api().Status(cmd.Context())
			if err != nil {
				return err
			}
			if st.Registry == nil || !st.Registry.Ready {
				return fmt.Errorf("the built-in registry is not running yet (gluebox status)")
			}
			addr := st.Registry.Addr
			if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
			ref, d, err := ociimage.Import(cmd.Context(), args[0], addr, as)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s@%s\n", ref, d)
			return nil
		},
	}
	imp.Flags().StringVar(&as, "as", "", "repository:tag to store it as (default: the name in the tarball)")
	cmd.AddCommand(imp)
	return cmd
}
