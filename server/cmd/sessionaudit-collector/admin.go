package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sessionaudit/sessionaudit/store"
)

// The administration commands work on the collector's database directly:
// run them where the collector's database credentials are.

// noArgs refuses positional arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", args)}
	}
	return nil
}

// oneArg returns the single positional argument, named what.
func oneArg(args []string, what string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", usageError{fmt.Sprintf("want exactly one %s, got %d arguments", what, len(args))}
	}
	return args[0], nil
}

// withStore opens the store, runs f and closes it.
func (c *cli) withStore(ctx context.Context, f func(st *store.Store) error) error {
	st, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}

// expiry turns a lifetime flag into a time; 0 means never.
func (c *cli) expiry(d time.Duration, flag string) (time.Time, error) {
	switch {
	case d < 0:
		return time.Time{}, usageError{fmt.Sprintf("--%s %v: must not be negative", flag, d)}
	case d == 0:
		return time.Time{}, nil
	default:
		return c.now().Add(d).UTC(), nil
	}
}

// when formats an optional time for tables.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func (c *cli) secretCreateCommand() *command {
	var label string
	var maxUses int
	var lifetime time.Duration
	var vdiPool bool
	cmd := newCommand("secret create", "", "Create an enrollment secret, print its id and its value. The value is shown\n"+
		"only now: the database keeps its SHA-256 hash. Give it to the MSI as\n"+
		"ENROLLMENT_SECRET or to the agents' Group Policy. Limit its uses and lifetime.")
	c.databaseFlag(cmd)
	cmd.String(&label, "label", "", "", "what the secret is for, e.g. 'GPO Servers OU, 2026-11' (required)")
	cmd.Int(&maxUses, "max-uses", "", 0, "how many enrollments it allows; 0 means unlimited")
	cmd.Duration(&lifetime, "expires-in", "", 0, "how long it is valid, e.g. 72h; 0 means until revoked")
	cmd.Bool(&vdiPool, "vdi-pool", "", false, "for VDI pools: a machine enrolled with a pool secret may enroll again (at every boot) without allow-reenroll, superseding its previous agent")
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if label == "" {
			return usageError{"--label is required"}
		}
		if maxUses < 0 {
			return usageError{fmt.Sprintf("--max-uses %d: must not be negative", maxUses)}
		}
		exp, err := c.expiry(lifetime, "expires-in")
		if err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			create := st.CreateEnrollmentSecret
			if vdiPool {
				create = st.CreateVDIPoolSecret
			}
			id, secret, err := create(ctx, label, maxUses, exp)
			if err != nil {
				return err
			}
			if vdiPool {
				fmt.Fprintln(c.stdout, "vdi pool: yes (re-enrollment of a pool machine needs no allow-reenroll)")
			}
			fmt.Fprintf(c.stdout, "id:      %s\nsecret:  %s\nexpires: %s\nuses:    %s\n", id, secret, when(exp), usesText(maxUses))
			fmt.Fprintln(c.stderr, "The secret is not shown again. Anyone who has it can enroll agents until it is revoked.")
			return nil
		})
	}
	return cmd
}

func usesText(max int) string {
	if max == 0 {
		return "unlimited"
	}
	return fmt.Sprint(max)
}

func (c *cli) secretListCommand() *command {
	cmd := newCommand("secret list", "", "List the enrollment secrets (never their values), newest first.")
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			list, err := st.ListEnrollmentSecrets(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tLABEL\tUSES\tCREATED\tEXPIRES\tREVOKED")
			for _, s := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t%s\t%s\n", s.ID, s.Label, s.Uses, usesText(s.MaxUses),
					when(s.CreatedAt), when(s.ExpiresAt), when(s.RevokedAt))
			}
			return tw.Flush()
		})
	}
	return cmd
}

func (c *cli) secretRevokeCommand() *command {
	cmd := newCommand("secret revoke", "ID", "Revoke an enrollment secret at once. Agents enrolled with it keep working.")
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		id, err := oneArg(args, "secret ID")
		if err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			if err := st.RevokeEnrollmentSecret(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "secret %s revoked\n", id)
			return nil
		})
	}
	return cmd
}

func (c *cli) agentListCommand() *command {
	cmd := newCommand("agent list", "", "List the enrolled agents with their host, state and certificate.")
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			list, err := st.ListAgents(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "AGENT\tHOST\tMACHINE GUID\tSTATE\tENROLLED\tCERT EXPIRES\tLAST REPORT")
			for _, a := range list {
				state := "enabled"
				if a.Disabled {
					state = "disabled " + when(a.DisabledAt)
				}
				if !a.KeyReuseAt.IsZero() {
					// C6: a superseded certificate was presented after its
					// successor was used.
					state += ", KEY IN USE TWICE since " + when(a.KeyReuseAt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.Hostname, a.MachineGUID, state,
					when(a.EnrolledAt), when(a.CertNotAfter), when(a.LastReceived))
			}
			return tw.Flush()
		})
	}
	return cmd
}

// agentDisableCommand makes "agent disable" (disable true) or "agent enable".
func (c *cli) agentDisableCommand(disable bool) *command {
	name, summary := "agent enable", "Enable a disabled agent again."
	if disable {
		name, summary = "agent disable", "Disable an agent: its certificate stops working at once (within the\n"+
			"collectors' few-second cache); its history stays."
	}
	cmd := newCommand(name, "AGENT-ID", summary)
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		id, err := oneArg(args, "agent ID")
		if err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			if err := st.SetAgentDisabled(ctx, id, disable); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "agent %s %sd\n", id, name[len("agent "):])
			return nil
		})
	}
	return cmd
}

func (c *cli) agentAllowReenrollCommand() *command {
	var lifetime time.Duration
	cmd := newCommand("agent allow-reenroll", "MACHINE-GUID", "Let the next enrollment of a host whose machine GUID an enabled agent holds\n"+
		"succeed (a reinstalled host); that enrollment disables the old agent.")
	c.databaseFlag(cmd)
	cmd.Duration(&lifetime, "expires-in", "", 24*time.Hour, "how long the allowance lasts")
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		guid, err := oneArg(args, "machine GUID")
		if err != nil {
			return err
		}
		if lifetime <= 0 {
			return usageError{fmt.Sprintf("--expires-in %v: must be positive", lifetime)}
		}
		exp := c.now().Add(lifetime).UTC()
		return c.withStore(ctx, func(st *store.Store) error {
			if err := st.AllowReenrollment(ctx, guid, exp); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "machine %s may enroll again until %s\n", guid, when(exp))
			return nil
		})
	}
	return cmd
}

func (c *cli) tokenCreateCommand() *command {
	var name, role string
	var lifetime time.Duration
	cmd := newCommand("token create", "", "Create an API token for an analyst or a tool, print its id and value. The\n"+
		"value is shown only now: the database keeps its SHA-256 hash.")
	c.databaseFlag(cmd)
	cmd.String(&name, "name", "", "", "who or what uses it, e.g. 'alice' or 'siem-export' (required)")
	cmd.String(&role, "role", "", string(store.RoleReader), "reader (queries) or admin")
	cmd.Duration(&lifetime, "expires-in", "", 90*24*time.Hour, "how long it is valid; 0 means until revoked")
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		if name == "" {
			return usageError{"--name is required"}
		}
		r := store.Role(role)
		if r != store.RoleReader && r != store.RoleAdmin {
			return usageError{fmt.Sprintf("--role %q: want reader or admin", role)}
		}
		exp, err := c.expiry(lifetime, "expires-in")
		if err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			id, token, err := st.CreateAPIToken(ctx, name, r, exp)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "id:      %s\ntoken:   %s\nrole:    %s\nexpires: %s\n", id, token, r, when(exp))
			fmt.Fprintln(c.stderr, "The token is not shown again. Send it as 'authorization: Bearer TOKEN'.")
			return nil
		})
	}
	return cmd
}

func (c *cli) tokenListCommand() *command {
	cmd := newCommand("token list", "", "List the API tokens (never their values), newest first.")
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			list, err := st.ListAPITokens(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(c.stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tREVOKED\tLAST USED")
			for _, t := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role,
					when(t.CreatedAt), when(t.ExpiresAt), when(t.RevokedAt), when(t.LastUsed))
			}
			return tw.Flush()
		})
	}
	return cmd
}

func (c *cli) tokenRevokeCommand() *command {
	cmd := newCommand("token revoke", "ID", "Revoke an API token at once.")
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		id, err := oneArg(args, "token ID")
		if err != nil {
			return err
		}
		return c.withStore(ctx, func(st *store.Store) error {
			if err := st.RevokeAPIToken(ctx, id); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "token %s revoked\n", id)
			return nil
		})
	}
	return cmd
}
