// Command kubectl-autodeploy is autodeploy's CLI as a kubectl plugin: installed on PATH
// (`go install ./cmd/kubectl-autodeploy`, or `make kubectl-plugin`), it runs as
// `kubectl autodeploy list|history|pin|unpin|retry|approve|continue|rollback|why`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/autodeploy-dev/autodeploy/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.PluginBinary, os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
