package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/audit"
	"lode.dev/lode/internal/wire"
)

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The tamper-evident audit log: export it, verify it"}
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the audit log and its signed checkpoints as JSON lines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := fetchAudit(cmd, g)
			if err != nil {
				return err
			}
			return audit.WriteExport(g.out, log.Entries, log.Checkpoints)
		},
	}
	var file, key string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's chain and checkpoints; name the first bad entry",
		Long: `Verify the hash chain of the audit log and the signatures of its checkpoints.
Any edit, deletion, insertion or reordering of entries, and a tail cut off after
a checkpoint, is detected and the first bad entry named. By default the log and
the verifying key come from the server; --file verifies an export, and --key
pins the public key (as ` + "`lode audit key`" + ` printed it) instead of trusting the server's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var (
				entries []audit.Entry
				cps     []audit.Checkpoint
				pub     ed25519.PublicKey
			)
			if key != "" {
				b, err := base64.StdEncoding.DecodeString(key)
				if err != nil || len(b) != ed25519.PublicKeySize {
					return &ExitError{Code: 2, Err: fmt.Errorf("bad --key: want the base64 ed25519 public key `lode audit key` prints")}
				}
				pub = b
			}
			if file != "" {
				f, err := os.Open(file)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				defer f.Close()
				if entries, cps, err = audit.ReadExport(f); err != nil {
					return &ExitError{Code: 2, Err: err}
				}
			}
			if file == "" || pub == nil {
				log, err := fetchAudit(cmd, g)
				if err != nil {
					return err
				}
				if file == "" {
					entries, cps = log.Entries, log.Checkpoints
				}
				if pub == nil {
					pub = log.PublicKey
				}
			}
			if p := audit.Verify(entries, cps, pub); p != nil {
				return &ExitError{Code: 1, Err: p}
			}
			fmt.Fprintf(g.out, "audit log intact: %d entries, %d signed checkpoints\n", len(entries), len(cps))
			return nil
		},
	}
	verify.Flags().StringVar(&file, "file", "", "verify an export written by `lode audit export`")
	verify.Flags().StringVar(&key, "key", "", "the base64 public key to verify checkpoints with (default: the server's)")
	keyCmd := &cobra.Command{
		Use:   "key",
		Short: "Print the public key that verifies the audit log's checkpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := fetchAudit(cmd, g)
			if err != nil {
				return err
			}
			fmt.Fprintln(g.out, base64.StdEncoding.EncodeToString(log.PublicKey))
			return nil
		},
	}
	cmd.AddCommand(export, verify, keyCmd)
	return cmd
}

// fetchAudit reads the audit log from the control plane.
func fetchAudit(cmd *cobra.Command, g *globals) (*wire.AuditLog, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	return c.Audit(cmd.Context())
}
