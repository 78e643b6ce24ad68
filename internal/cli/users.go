package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"lode.dev/lode/internal/client"
	"lode.dev/lode/internal/core"
	"lode.dev/lode/internal/store"
	"lode.dev/lode/internal/wire"
)

func whoamiCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who your token signs you in as, and your roles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) (*wire.WhoAmI, error) { return c.WhoAmI(cmd.Context()) }, func(w *wire.WhoAmI) {
				kind := "user"
				if w.User.Admin {
					kind = "administrator"
				}
				fmt.Fprintf(g.out, "%s (%s)\n", w.User.Name, kind)
				var rows [][]string
				for p, r := range w.Roles {
					rows = append(rows, []string{p, string(r)})
				}
				if len(rows) > 0 {
					table(g, "PROJECT\tROLE", rows)
				}
			})
		},
	}
}

func usersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "List users (administrators)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) ([]*store.User, error) { return c.Users(cmd.Context()) }, func(us []*store.User) {
				var rows [][]string
				for _, u := range us {
					rows = append(rows, []string{u.Name, fmt.Sprint(u.Admin), ago(u.CreatedAt)})
				}
				table(g, "NAME\tADMIN\tCREATED", rows)
			})
		},
	}
	var isAdmin bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user; give them a token with `lode tokens create --user NAME`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			u, err := c.CreateUser(cmd.Context(), &wire.CreateUser{Name: args[0], Admin: isAdmin})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(u)
			}
			fmt.Fprintf(g.out, "user %s added\n", u.Name)
			return nil
		},
	}
	add.Flags().BoolVar(&isAdmin, "admin", false, "make the user an administrator (pools, users, every project)")
	cmd.AddCommand(add)
	return cmd
}

func tokensCmd(g *globals) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "tokens",
		Short: "List your API tokens (--user for another's, administrators)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return show(g, func(c *client.Client) ([]*store.Token, error) { return c.Tokens(cmd.Context(), user) }, func(ts []*store.Token) {
				var rows [][]string
				for _, t := range ts {
					state, expires := tokenState(t.Valid(time.Now()), t.RevokedAt, t.ExpiresAt)
					rows = append(rows, []string{t.ID, t.Name, state, expires, ago(t.CreatedAt)})
				}
				table(g, "ID\tNAME\tSTATE\tEXPIRES\tCREATED", rows)
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "whose tokens (administrators)")
	var name string
	var expires time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Make an API token; its secret is printed this once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), &wire.CreateToken{User: user, Name: name, ExpiresInS: int64(expires.Seconds())})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(t)
			}
			fmt.Fprintf(g.errOut, "token %s for %s (shown this once; use it with --token or $LODE_TOKEN):\n", t.ID, t.User)
			fmt.Fprintln(g.out, t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "the user the token is for (administrators; default: you)")
	create.Flags().StringVar(&name, "name", "", "what the token is for")
	create.Flags().DurationVar(&expires, "expires", 90*24*time.Hour, "how long the token lives (0: forever)")
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it is useless from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "token %s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, revoke)
	return cmd
}

// memberCmds are `lode projects members|grant|revoke`.
func memberCmds(g *globals) []*cobra.Command {
	members := &cobra.Command{
		Use:   "members PROJECT",
		Short: "List a project's members and their roles",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(g, func(c *client.Client) ([]*wire.MemberInfo, error) { return c.Members(cmd.Context(), args[0]) }, func(ms []*wire.MemberInfo) {
				var rows [][]string
				for _, m := range ms {
					rows = append(rows, []string{m.User, string(m.Role)})
				}
				table(g, "USER\tROLE", rows)
			})
		},
	}
	grant := &cobra.Command{
		Use:   "grant PROJECT USER ROLE",
		Short: "Give a user a role in a project: viewer, member or admin",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := core.ParseRole(args[2])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			m, err := c.PutMember(cmd.Context(), args[0], args[1], &wire.MemberSpec{Role: role})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(m)
			}
			fmt.Fprintf(g.out, "%s is %s of project %s\n", m.User, m.Role, m.Project)
			return nil
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke PROJECT USER",
		Short: "Take a user's role in a project away",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteMember(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s has no role in project %s now\n", args[1], args[0])
			return nil
		},
	}
	return []*cobra.Command{members, grant, revoke}
}

// tokenState says, for a listing, whether a token (an API or a join token)
// is valid, revoked or expired, and when it expires.
func tokenState(valid bool, revokedAt, expiresAt time.Time) (state, expires string) {
	state, expires = "valid", "never"
	if !expiresAt.IsZero() {
		expires = expiresAt.Local().Format(time.DateTime)
	}
	switch {
	case !revokedAt.IsZero():
		state = "revoked"
	case !valid:
		state = "expired"
	}
	return state, expires
}
