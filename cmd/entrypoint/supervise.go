package main

import (
	"context"
	"time"

	"snapvisor/internal/zlog"
	"snapvisor/supervisor"
)

// trimDelay is how long after the service's start trimResidentCode runs.
const trimDelay = 500 * time.Millisecond

// newSupervisor prepares the supervisor of the service argv (environment
// env) and starts handling TERM and INT: from its return on, one of them
// is the supervisor's business, never the Go runtime's exit 2. Half a
// second after the service has started, when start-up is over, the
// process's idle memory is trimmed (trimResidentCode); a service that
// exits sooner costs no trim, whose pages the exit path would fault back.
func newSupervisor(cfg supervisor.Config, argv, env []string, log zlog.Logger) (*supervisor.Supervisor, error) {
	sup, err := supervisor.New(cfg, argv, env, log)
	if err != nil {
		return nil, err
	}
	sup.Listen()
	go func() {
		<-sup.Started()
		time.Sleep(trimDelay)
		trimResidentCode()
	}()
	return sup, nil
}

// superviseAlone runs the service with nothing beside it, a pure init, and
// returns its exit code (SNAPVISOR_SUCCESS_CODES count as 0) as an
// *exitError; a TERM or INT before the start is 128+N (notStarted).
func superviseAlone(ctx context.Context, sup *supervisor.Supervisor, log zlog.Logger) error {
	st, err := sup.Run(ctx)
	if err != nil {
		return notStarted(log, err)
	}
	return &exitError{code: sup.ExitCode(st)}
}
