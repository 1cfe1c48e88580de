package main

import (
	"context"
	"fmt"
)

func cmdVersion(_ context.Context, a *app, _ []string) error {
	fmt.Fprintf(a.stdout, "snapvisor entrypoint %s\n", version)
	return nil
}
