package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"snapvisor/snapshot"
	"snapvisor/store"
)

// ErrRestoreFailed means snapshots exist but none could be restored; the
// service must not start on an empty directory then.
var ErrRestoreFailed = errors.New("auto-restore failed")

// RestoreIfEmpty restores, before the service starts, the newest snapshot that
// verifies when the first source directory is missing or empty, falling back
// to older snapshots when newer ones are corrupt. It returns the restored
// snapshot's name, or "" when nothing had to (or could) be restored.
func RestoreIfEmpty(ctx context.Context, cfg snapshot.Config, remotes []store.Store, log *zap.Logger) (string, error) {
	first := cfg.Sources[0]
	empty, err := isEmptyDir(first)
	if err != nil {
		return "", fmt.Errorf("auto-restore: inspect %s: %w", first, err)
	}
	if !empty {
		log.Info("auto-restore: data present, nothing to restore", zap.String("source", first))
		return "", nil
	}
	list, err := snapshot.List(cfg.Dir, cfg.Name)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("auto-restore: list %s: %w", cfg.Dir, err)
	}
	if len(list) == 0 && len(remotes) > 0 {
		// The new-node, new-volume case: no local snapshot, try the remotes in order.
		p, err := fetchFromRemotes(ctx, remotes, cfg.Name, cfg.Dir, log)
		if err != nil {
			return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
		}
		if p != "" {
			if list, err = snapshot.List(cfg.Dir, cfg.Name); err != nil {
				return "", fmt.Errorf("auto-restore: list %s: %w", cfg.Dir, err)
			}
		}
	}
	if len(list) == 0 {
		log.Info("auto-restore: data directory is empty and there is no snapshot: starting with empty data",
			zap.String("source", first), zap.String("dir", cfg.Dir), zap.Int("remotes", len(remotes)))
		return "", nil
	}
	discard := true // nothing to keep when every source is empty
	for _, s := range cfg.Sources[1:] {
		if e, _ := isEmptyDir(s); !e {
			discard = false
		}
	}
	var errs []error
	for i, s := range list {
		log.Info("auto-restore: restoring before the service starts", zap.String("snapshot", s.Name), zap.String("source", first))
		err := snapshot.Restore(ctx, cfg, s.Path, snapshot.RestoreOptions{DiscardCurrent: discard}, log)
		if err == nil {
			log.Info("auto-restore: done", zap.String("snapshot", s.Name))
			return s.Name, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		if i+1 < len(list) {
			log.Warn("auto-restore: snapshot unusable, trying an older one", zap.String("snapshot", s.Name), zap.Error(err))
		}
	}
	return "", fmt.Errorf("%w: none of %d snapshots in %s restored (the service was not started): %w",
		ErrRestoreFailed, len(list), cfg.Dir, errors.Join(errs...))
}

// isEmptyDir reports whether dir is missing or has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}
