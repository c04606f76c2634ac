// Command distren is the distributed render farm's one binary: the server
// (serve), remote workers (worker), a one-shot local farm (render) and the
// client commands (submit, status, fetch, cancel, retry). Exit codes are
// documented in docs/cli.md and defined in exit.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/termsafe"
)

func main() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var sig atomic.Value // the signal that stopped the command
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		sig.Store(s)
		stop()
		signal.Stop(sigs) // a second Ctrl-C kills at once
	}()
	root := newRootCommand()
	cmd, err := root.ExecuteContextC(ctx)
	signal.Stop(sigs)
	stopped, _ := sig.Load().(os.Signal)
	name := ""
	if cmd != nil {
		name = cmd.Name()
	}
	code := exitStatus(name, err, stopped)
	switch {
	case err == nil || code == exitOK:
	case stopped != nil && errors.Is(err, context.Canceled):
		what := "interrupted"
		if stopped == syscall.SIGTERM {
			what = "terminated"
		}
		fmt.Fprintln(os.Stderr, "distren:", what)
	default:
		// Messages carry text of jobs, renderers and servers: nothing in
		// them may act on the terminal.
		fmt.Fprintln(os.Stderr, "distren:", termsafe.Text(explain(err).Error()))
	}
	os.Exit(code)
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "distren",
		Short:         "A distributed render farm",
		Long:          "distren renders jobs of frames across the machines you have.\nServer: distren serve. Workers: distren worker. One-shot: distren render.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
	})
	root.AddCommand(newServeCommand(), newWorkerCommand(), newRenderCommand(), newSubmitCommand(),
		newStatusCommand(), newFetchCommand(), newCancelCommand(), newRetryCommand(), newPauseCommand(), newResumeCommand(), newPriorityCommand(), newInitCommand(), newValidateCommand(), newWorkersCommand(), newPeersCommand(), newVaultCommand(), newDeleteCommand(), newGCCommand(), newTokenCommand(), newVersionCommand())
	return root
}
