package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/termsafe"
)

func newTokenCommand() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the API tokens of a server",
		Long: `Manage the tokens a server accepts. They live in DATA/auth.db, which only
keeps a hash of each secret: a token is shown once, when it is created. These
commands work on the file directly, also beside a running server, which sees a
new or revoked token within seconds. The first token turns authentication on.

Roles: client (submit, cancel, retry, delete, read), worker (claim and report
frames, read what rendering needs), read (GET requests only), admin (all).`,
	}
	c.PersistentFlags().StringVar(&data, "data", "distren-data", "the server's data directory")

	var name, role string
	create := &cobra.Command{
		Use:   "create --name NAME --role ROLE",
		Short: "Create a token and print it (the only time it is shown)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runTokenCreate(c.Context(), data, name, role, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	create.Flags().StringVar(&name, "name", "", "the token's name: who or what uses it (unique among valid tokens)")
	create.Flags().StringVar(&role, "role", "", "client, worker, read or admin")
	create.MarkFlagRequired("name")
	create.MarkFlagRequired("role")

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens, revoked ones included (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runTokenList(c.Context(), data, asJSON, c.OutOrStdout())
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke NAME|ID",
		Short: "Revoke a token: a running server refuses it within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runTokenRevoke(c.Context(), data, args[0], c.ErrOrStderr())
		},
	}
	c.AddCommand(create, list, revoke)
	return c
}

// openTokens opens DATA/auth.db; only create makes it.
func openTokens(data string, create bool) (*auth.Store, error) {
	p := filepath.Join(data, auth.FileName)
	if create {
		if err := os.MkdirAll(data, 0o755); err != nil {
			return nil, err
		}
	} else if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: no token was ever created for the server of data directory %s (--data)", p, data)
	}
	return auth.Open(p)
}

func runTokenCreate(ctx context.Context, data, name, role string, stdout, stderr io.Writer) error {
	r, err := auth.ParseRole(role)
	if err != nil {
		return usageError{fmt.Errorf("--role: %w", err)}
	}
	if err := auth.CheckName(name); err != nil {
		return usageError{fmt.Errorf("--name: %w", err)}
	}
	s, err := openTokens(data, true)
	if err != nil {
		return err
	}
	defer s.Close()
	text, t, err := s.Create(ctx, name, r)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, text)
	fmt.Fprintf(stderr, "created token %q (id %s, role %s) in %s. It is shown only now: the store keeps a hash of it.\n",
		t.Name, t.ID, t.Role, s.Path())
	return nil
}

func runTokenList(ctx context.Context, data string, asJSON bool, out io.Writer) error {
	s, err := openTokens(data, false)
	if err != nil {
		return err
	}
	defer s.Close()
	ts, err := s.List(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		if ts == nil {
			ts = []auth.Token{}
		}
		e := json.NewEncoder(out)
		e.SetIndent("", "  ")
		return e.Encode(ts)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tREVOKED")
	for _, t := range ts {
		revoked := "-"
		if !t.Active() {
			revoked = t.Revoked.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, termsafe.Line(t.Name), t.Role, t.Created.Local().Format(time.DateTime), revoked)
	}
	return tw.Flush()
}

func runTokenRevoke(ctx context.Context, data, ref string, stderr io.Writer) error {
	s, err := openTokens(data, false)
	if err != nil {
		return err
	}
	defer s.Close()
	t, err := s.Revoke(ctx, ref)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "revoked token %q (id %s, role %s)\n", t.Name, t.ID, t.Role)
	return nil
}
