//go:build !initonly

package main

import (
	"context"
	"flag"
	"io"
	"os"

	"golang.org/x/term"

	"snapvisor/internal/progress"
)

// progressFlag adds --no-progress to the flags of a command that shows a
// live progress line.
func progressFlag(fs *flag.FlagSet) *bool {
	return fs.Bool("no-progress", false, "no live progress line (it is shown only when stdout and stderr are terminals, and never with --json)")
}

// withProgress returns ctx carrying a progress.Meter drawn as a live
// progress line on stderr, when stdout and stderr are terminals and off is
// false (--no-progress, --json); else ctx and a nil Meter. stop draws the
// final state and ends the line; call it before printing the result.
func (a *app) withProgress(ctx context.Context, off bool) (_ context.Context, m *progress.Meter, stop func()) {
	if off || !isTerminal(a.stdout) || !isTerminal(a.stderr) {
		return ctx, nil, func() {}
	}
	m = &progress.Meter{}
	return progress.NewContext(ctx, m), m, progress.StartBar(a.stderr, m)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
