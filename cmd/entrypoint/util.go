package main

import (
	"context"
	"io"
	"text/tabwriter"
)

func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
}

func cmdStatus(_ context.Context, _ *app, _ []string) error {
	return &exitError{code: exitFailure, err: errNotYet("status")}
}

func cmdHealth(_ context.Context, _ *app, _ []string) error {
	return &exitError{code: exitFailure, err: errNotYet("health")}
}

type errNotYet string

func (e errNotYet) Error() string {
	return "`" + string(e) + "` needs scheduled snapshots (SNAPVISOR_BACKUP), which this build does not have yet"
}
