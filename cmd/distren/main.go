// Command distren is the distributed render farm's one binary: the server
// (serve), remote workers (worker), a one-shot local farm (render) and the
// client commands (submit, status, fetch, cancel, retry). Exit codes are
// documented in docs/cli.md and defined in exit.go.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "distren:", explain(err))
	}
	stop()
	os.Exit(exitCode(err))
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
		newStatusCommand(), newFetchCommand(), newCancelCommand(), newRetryCommand(), newInitCommand(), newWorkersCommand(), newVaultCommand(), newDeleteCommand(), newGCCommand(), newTokenCommand(), newVersionCommand())
	return root
}
