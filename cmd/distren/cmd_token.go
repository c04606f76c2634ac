package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/auth"
	"github.com/distren/distren/internal/termsafe"
)

// tokenOptions are what every token verb takes: the data directory whose
// auth.db holds the tokens.
type tokenOptions struct {
	output
	data string
}

type tokenCreateOptions struct {
	tokenOptions
	name, role string
}

type tokenListOptions struct {
	tokenOptions
	json bool
}

func newTokenCommand() *cobra.Command {
	var data string // --data, a flag of every token verb
	opts := func(c *cobra.Command) tokenOptions { return tokenOptions{outputOf(c), data} }
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

	var co tokenCreateOptions
	create := &cobra.Command{
		Use:   "create --name NAME --role ROLE",
		Short: "Create a token and print it (the only time it is shown)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			co.tokenOptions = opts(c)
			return runTokenCreate(c.Context(), co, args)
		},
	}
	create.Flags().StringVar(&co.name, "name", "", "the token's name: who or what uses it (unique among valid tokens)")
	create.Flags().StringVar(&co.role, "role", "", "client, worker, read, peer (another server, named as it is: docs/federation.md) or admin")
	create.MarkFlagRequired("name")
	create.MarkFlagRequired("role")

	var lo tokenListOptions
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens, revoked ones included (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			lo.tokenOptions = opts(c)
			return runTokenList(c.Context(), lo, args)
		},
	}
	list.Flags().BoolVar(&lo.json, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke NAME|ID",
		Short: "Revoke a token: a running server refuses it within seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runTokenRevoke(c.Context(), opts(c), args)
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

func runTokenCreate(ctx context.Context, o tokenCreateOptions, _ []string) error {
	r, err := auth.ParseRole(o.role)
	if err != nil {
		return usageError{fmt.Errorf("--role: %w", err)}
	}
	if err := auth.CheckName(o.name); err != nil {
		return usageError{fmt.Errorf("--name: %w", err)}
	}
	s, err := openTokens(o.data, true)
	if err != nil {
		return err
	}
	defer s.Close()
	text, t, err := s.Create(ctx, o.name, r)
	if err != nil {
		return err
	}
	fmt.Fprintln(o.stdout, text)
	fmt.Fprintf(o.stderr, "created token %q (id %s, role %s) in %s. It is shown only now: the store keeps a hash of it.\n",
		t.Name, t.ID, t.Role, s.Path())
	return nil
}

func runTokenList(ctx context.Context, o tokenListOptions, _ []string) error {
	out := o.stdout
	s, err := openTokens(o.data, false)
	if err != nil {
		return err
	}
	defer s.Close()
	ts, err := s.List(ctx)
	if err != nil {
		return err
	}
	if o.json {
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

func runTokenRevoke(ctx context.Context, o tokenOptions, args []string) error {
	s, err := openTokens(o.data, false)
	if err != nil {
		return err
	}
	defer s.Close()
	t, err := s.Revoke(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(o.stderr, "revoked token %q (id %s, role %s)\n", t.Name, t.ID, t.Role)
	return nil
}
