//go:build !initonly

package main

import "context"

func cmdVersion(_ context.Context, a *app, _ []string) error {
	printVersion(a.stdout)
	return nil
}
