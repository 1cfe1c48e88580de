package store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"go.uber.org/zap"
)

// Policy bounds the retries of a failed operation: Retries more attempts after
// the first, waiting Backoff, 2*Backoff, 4*Backoff, ... (at most MaxBackoff),
// each delay drawn uniformly from [d/2, d] ("equal jitter").
type Policy struct {
	Retries    int
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// delay returns the wait before retry number n (1-based).
func (p Policy) delay(n int) time.Duration {
	d := p.Backoff
	if d <= 0 {
		d = time.Second
	}
	maxd := p.MaxBackoff
	if maxd <= 0 {
		maxd = time.Minute
	}
	for i := 1; i < n && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Do runs op until it succeeds, fails permanently (IsPermanent), the context
// ends, or the retries are used up; it returns op's last error, with the
// number of attempts when there were several.
func (p Policy) Do(ctx context.Context, log *zap.Logger, what string, op func(ctx context.Context) error) error {
	if log == nil {
		log = zap.NewNop()
	}
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info("remote operation succeeded after retries", zap.String("op", what), zap.Int("attempt", attempt))
			}
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if IsPermanent(err) {
			return err
		}
		if attempt > p.Retries {
			if attempt > 1 {
				return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
			}
			return err
		}
		d := p.delay(attempt)
		log.Warn("remote operation failed; retrying", zap.String("op", what), zap.Int("attempt", attempt),
			zap.Int("retries", p.Retries), zap.Duration("delay", d), zap.Error(err))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Retrying is a Store that retries failed operations of another.
type Retrying struct {
	Store
	policy Policy
	log    *zap.Logger
}

var _ Store = (*Retrying)(nil)

// WithRetry wraps s so that failed operations are retried by p. Put can be
// retried only when its reader is an io.Seeker (an *os.File, a bytes.Reader):
// it is rewound to where it started; any other reader gets a single attempt.
// Get retries opening, not reading.
func WithRetry(s Store, p Policy, log *zap.Logger) *Retrying {
	if log == nil {
		log = zap.NewNop()
	}
	return &Retrying{Store: s, policy: p, log: log.With(zap.String("remote", s.Name()))}
}

// Unwrap returns the wrapped store.
func (r *Retrying) Unwrap() Store { return r.Store }

// Policy returns the retry policy.
func (r *Retrying) Policy() Policy { return r.policy }

func (r *Retrying) Put(ctx context.Context, key string, rd io.Reader, size int64) error {
	sk, ok := rd.(io.Seeker)
	if !ok {
		return r.Store.Put(ctx, key, rd, size)
	}
	start, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return r.Store.Put(ctx, key, rd, size)
	}
	first := true
	return r.policy.Do(ctx, r.log, "put "+key, func(ctx context.Context) error {
		if !first {
			if _, err := sk.Seek(start, io.SeekStart); err != nil {
				return &Error{Store: r.Name(), Op: "put", Key: key, Err: fmt.Errorf("rewind for retry: %w", err), Permanent: true}
			}
		}
		first = false
		return r.Store.Put(ctx, key, rd, size)
	})
}

func (r *Retrying) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := r.policy.Do(ctx, r.log, "get "+key, func(ctx context.Context) error {
		var err error
		rc, err = r.Store.Get(ctx, key)
		return err
	})
	return rc, err
}

func (r *Retrying) List(ctx context.Context, prefix string) ([]Object, error) {
	var objs []Object
	err := r.policy.Do(ctx, r.log, "list "+prefix, func(ctx context.Context) error {
		var err error
		objs, err = r.Store.List(ctx, prefix)
		return err
	})
	return objs, err
}

func (r *Retrying) Delete(ctx context.Context, key string) error {
	return r.policy.Do(ctx, r.log, "delete "+key, func(ctx context.Context) error {
		return r.Store.Delete(ctx, key)
	})
}

// Retry runs op under the retry policy of s (if s is a *Retrying, or wraps
// one), for multi-step operations such as a download whose reading fails
// midway. op gets the store to use: the one inside the *Retrying, so that
// retries do not nest.
func Retry(ctx context.Context, s Store, what string, op func(ctx context.Context, s Store) error) error {
	r, ok := As[*Retrying](s)
	if !ok {
		return op(ctx, s)
	}
	return r.policy.Do(ctx, r.log, what, func(ctx context.Context) error { return op(ctx, r.Store) })
}
