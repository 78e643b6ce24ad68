// Command lode is Lode's one binary: the control plane, the agent, the CLI.
package main

import (
	"context"
	"os"

	"lode.dev/lode/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:]))
}
