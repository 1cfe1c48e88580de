//go:build !initonly

package main

import (
	"context"
	"fmt"

	"snapvisor/config"
)

func cmdEnv(_ context.Context, a *app, _ []string) error {
	c := &Config{}
	fmt.Fprintln(a.stdout, "snapvisor reads these environment variables (defaults in the DEFAULT column):")
	fmt.Fprintln(a.stdout)
	config.Usage(newTabWriter(a.stdout), c.specs()...)
	return nil
}
