// Package remote keeps snapshots on remote stores (package store): push
// (Push from a local file, PushStream and Stream while the snapshot is
// taken), list, fetch and rotate, the single-writer lease, and the fan-out
// of one snapshot stream to several remotes. It keeps one rule: a snapshot
// is present on a remote only when its .sha256 is, and the .sha256 is
// uploaded last, after the archive is confirmed — so a partial upload is
// never listed as a snapshot.
//
// A Remote is a store with the time limit of one transfer to or from it
// (SNAPVISOR_REMOTE_TIMEOUT): the caller bounds each transfer once
// (WithTimeout), around everything done with that remote for one snapshot.
package remote

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"snapvisor/store"
)

// Remote is one configured remote: a store (with its retry and metrics
// wrappers) and the limits that apply to it.
type Remote struct {
	store.Store
	// Timeout bounds one snapshot transfer to or from the store, retries and
	// rotation included (SNAPVISOR_REMOTE_TIMEOUT); 0: none.
	Timeout time.Duration
	// LeaseTTL is how long a lease written on the store lasts
	// (SNAPVISOR_LEASE_TTL); 0: DefaultLeaseTTL.
	LeaseTTL time.Duration
}

// Unwrap returns the store (store.As finds its wrappers and abilities through it).
func (r Remote) Unwrap() store.Store { return r.Store }

// OpenAll opens every remote of cfg (store.OpenAll: in order, each wrapped
// for production use, one that fails to open kept as a store that retries
// the opening) with cfg's limits. The error joins the failures.
func OpenAll(ctx context.Context, cfg store.Config, set *metrics.Set, log *zap.Logger) ([]Remote, error) {
	stores, err := store.OpenAll(ctx, cfg, set, log)
	out := make([]Remote, len(stores))
	for i, s := range stores {
		out[i] = Remote{Store: s, Timeout: cfg.Timeout, LeaseTTL: cfg.LeaseTTL}
	}
	return out, err
}

// CloseAll closes every remote's store, returning the first error.
func CloseAll(remotes []Remote) error {
	stores := make([]store.Store, len(remotes))
	for i, r := range remotes {
		stores[i] = r.Store
	}
	return store.CloseAll(stores)
}

// ErrTimeout is wrapped by the error of a transfer that hit its remote's Timeout.
var ErrTimeout = errors.New("remote timed out (SNAPVISOR_REMOTE_TIMEOUT)")

// WithTimeout returns ctx bounded by r.Timeout, when r has one. Use it once
// around everything done with one remote for one snapshot; TimeoutError
// turns the resulting context error into a message naming the limit.
func (r Remote) WithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if r.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, r.Timeout, fmt.Errorf("%s: %w after %s", r.Name(), ErrTimeout, r.Timeout))
}

// TimeoutError returns err, or the timeout cause of ctx wrapping err when ctx
// ended by WithTimeout's limit.
func TimeoutError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if c := context.Cause(ctx); c != nil && errors.Is(c, ErrTimeout) && !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}
