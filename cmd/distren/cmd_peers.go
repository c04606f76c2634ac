package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/distren/distren/internal/durl"
	"github.com/distren/distren/internal/farm"
	"github.com/distren/distren/internal/termsafe"
)

// peerFlags are serve's peers: --peer NAME=URL, --peer-token-file
// NAME=FILE, --peer-ca-cert FILE.
type peerFlags struct {
	peers, tokenFiles []string
	caCert            string
}

func (p *peerFlags) add(f *pflag.FlagSet) {
	f.StringArrayVar(&p.peers, "peer", nil, "a peer server to lend frames to and borrow frames from, NAME=URL (repeatable; docs/federation.md)")
	f.StringArrayVar(&p.tokenFiles, "peer-token-file", nil, "the token this server presents to peer NAME, NAME=FILE (a token of role peer created on that server under this server's name)")
	f.StringVar(&p.caCert, "peer-ca-cert", "", "PEM file of the CA https:// peers' certificates must chain to (default: the system's roots)")
}

// apply sets cfg.Peers.
func (p peerFlags) apply(cfg *farm.Config) error {
	tokens := map[string]string{}
	for _, tf := range p.tokenFiles {
		name, file, ok := strings.Cut(tf, "=")
		if !ok || name == "" || file == "" {
			return usageError{fmt.Errorf("--peer-token-file %q: expected NAME=FILE", tf)}
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return usageError{fmt.Errorf("--peer-token-file %s: %w", name, err)}
		}
		if tokens[name] = strings.TrimSpace(string(b)); tokens[name] == "" {
			return usageError{fmt.Errorf("--peer-token-file %s: %s is empty", name, file)}
		}
	}
	var tlsCfg *tls.Config
	if p.caCert != "" {
		var err error
		if tlsCfg, err = trustCA("--peer-ca-cert", p.caCert); err != nil {
			return usageError{err}
		}
	}
	seen := map[string]bool{}
	for _, pv := range p.peers {
		name, url, ok := strings.Cut(pv, "=")
		switch {
		case !ok || name == "" || url == "":
			return usageError{fmt.Errorf("--peer %q: expected NAME=URL, e.g. farm-b=http://10.0.0.2:7878", pv)}
		case !durl.ValidServer(name):
			return usageError{fmt.Errorf("--peer %q: %q is not a server name ([a-z0-9][a-z0-9-]*)", pv, name)}
		case seen[name]:
			return usageError{fmt.Errorf("--peer %s given twice: peer names are unique", name)}
		}
		seen[name] = true
		cfg.Peers = append(cfg.Peers, farm.Peer{Name: name, URL: url, Token: tokens[name], TLS: tlsCfg})
	}
	for name := range tokens {
		if !seen[name] {
			return usageError{fmt.Errorf("--peer-token-file %s: no --peer %s=URL", name, name)}
		}
	}
	return nil
}

type peersOptions struct {
	connOptions
	output
	json bool
}

func newPeersCommand() *cobra.Command {
	var o peersOptions
	c := &cobra.Command{
		Use:   "peers",
		Short: "List a server's peers: whether each is reachable, its idle workers and backends, frames lent to and borrowed from it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runPeers(c.Context(), o, args)
		},
	}
	o.connOptions.addFlags(c)
	c.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return c
}

func runPeers(ctx context.Context, o peersOptions, _ []string) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	ps, err := cl.Peers(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(o.stdout, ps)
	}
	if len(ps) == 0 {
		fmt.Fprintln(o.stderr, "no peers (serve --peer NAME=URL names one)")
		return nil
	}
	tw := tabwriter.NewWriter(o.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tSTATE\tWORKERS\tIDLE\tLENT\tBORROWED\tLAST CONTACT\tBACKENDS\tURL")
	for _, p := range ps {
		var bs []string
		for name, vs := range p.Backends {
			bs = append(bs, termsafe.Line(name+" "+strings.Join(vs, "/")))
		}
		slices.Sort(bs)
		last := "never"
		if p.LastContact != nil {
			last = time.Since(*p.LastContact).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d (%d done)\t%d (%d done)\t%s\t%s\t%s\n", termsafe.Line(p.Name), termsafe.Line(p.State),
			p.Workers, p.Idle, p.Lent, p.LentDone, p.Borrowed, p.BorrowedDone, last, strings.Join(bs, ", "), termsafe.Line(p.URL))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range ps {
		if p.Error != "" {
			fmt.Fprintf(o.stderr, "%s: %s\n", termsafe.Line(p.Name), termsafe.Line(p.Error))
		}
	}
	return nil
}
