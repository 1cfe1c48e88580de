package store

import (
	"context"
	"io"
	"sync"

	"go.uber.org/zap"
)

// unopened is a remote that OpenAll could not open (a missing key file or
// known_hosts, an unmounted directory, no credentials yet). Every operation
// tries to open it again, so a remote that becomes usable later is used from
// then on; until then each operation fails with the reason. It keeps the
// remote in the list: pushes report it as failed, and auto-restore knows that
// a configured remote could not be looked at.
type unopened struct {
	rawURL string
	name   string
	cfg    Config
	log    *zap.Logger

	mu sync.Mutex
	s  Store
}

var _ Store = (*unopened)(nil)

func (u *unopened) Name() string { return u.name }

// store returns the opened backend, opening it when it is not yet.
func (u *unopened) store(ctx context.Context) (Store, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.s != nil {
		return u.s, nil
	}
	s, err := Open(ctx, u.rawURL, u.cfg, u.log)
	if err != nil {
		return nil, err
	}
	u.log.Info("remote opened after an earlier failure", zap.String("remote", u.name))
	u.s = s
	return s, nil
}

func (u *unopened) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	s, err := u.store(ctx)
	if err != nil {
		return err
	}
	return s.Put(ctx, key, r, size)
}

func (u *unopened) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s, err := u.store(ctx)
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, key)
}

func (u *unopened) List(ctx context.Context, prefix string) ([]Object, error) {
	s, err := u.store(ctx)
	if err != nil {
		return nil, err
	}
	return s.List(ctx, prefix)
}

func (u *unopened) Delete(ctx context.Context, key string) error {
	s, err := u.store(ctx)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

// Unwrap returns the backend once it is open, nil before (remote.Push finds
// backend's cheap re-hash through it).
func (u *unopened) Unwrap() Store {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.s == nil {
		return nil
	}
	return u.s
}

func (u *unopened) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.s == nil {
		return nil
	}
	return u.s.Close()
}
