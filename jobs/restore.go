package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.uber.org/zap"

	"snapvisor/remote"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// ErrRestoreFailed means snapshots exist but none could be restored; the
// service must not start on an empty directory then.
var ErrRestoreFailed = errors.New("auto-restore failed")

// ErrRemoteUnavailable means a configured remote could not be listed (after
// its retries) and no other source had a snapshot: whether it holds one is
// unknown, so starting on empty data could hide the data it has.
var ErrRemoteUnavailable = errors.New("a remote could not be listed")

// RestoreIfEmpty restores, before the service starts, the newest snapshot that
// verifies when the first source directory is missing or empty
// (snapshot.IsEmpty: a lost+found directory and restore's own work files do
// not count as data), after completing any interrupted restore
// (snapshot.Recover). It returns the restored snapshot's name, or "" when
// there was nothing to restore.
//
// The local snapshots (SNAPVISOR_DIR) come first, newest first. When there is
// none, or none verifies, the remotes are tried (RestoreFromRemotes): every
// snapshot of every remote, newest first, the remotes' order breaking ties.
// Only a snapshot that fails to verify (snapshot.ErrChecksum,
// snapshot.ErrCorrupt) or has vanished makes it try an older one; a local
// fault (no space, permissions) or a remote that cannot deliver the newest
// snapshot stops it with an error, so that older data is never restored
// silently in place of newer. A remote that cannot be listed is retried
// under its retry policy (SNAPVISOR_REMOTE_RETRIES, _BACKOFF); if it still
// cannot and no other source has a snapshot, it fails (ErrRemoteUnavailable)
// rather than start the service on empty data.
//
// In streaming mode (cfg.Dir empty) a remote snapshot is downloaded into a
// temporary directory beside the first source and deleted afterwards;
// otherwise into cfg.Dir, where it stays as a local snapshot.
func RestoreIfEmpty(ctx context.Context, cfg snapshot.Config, remotes []remote.Remote, log *zap.Logger) (string, error) {
	// An interrupted restore is completed before anything is judged empty.
	if err := snapshot.Recover(cfg, log); err != nil {
		return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
	}
	opts, empty, err := emptySources(cfg, log)
	if !empty || err != nil {
		return "", err
	}
	first := cfg.Sources[0]

	var list []snapshot.Info
	if cfg.Dir != "" {
		if list, err = snapshot.List(cfg.Dir, cfg.Name); err != nil {
			return "", fmt.Errorf("auto-restore: list %s: %w", cfg.Dir, err)
		}
	}
	var errs []error
	for i, s := range list {
		log.Info("auto-restore: restoring before the service starts", zap.String("snapshot", s.Name), zap.String("source", first))
		err := snapshot.Restore(ctx, cfg, s.Path, opts, log)
		if err == nil {
			log.Info("auto-restore: done", zap.String("snapshot", s.Name))
			return s.Name, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
		if !unusable(err) {
			return "", fmt.Errorf("%w: restoring %s (the service was not started; older snapshots were not tried: the fault is not the snapshot's): %w",
				ErrRestoreFailed, s.Path, err)
		}
		if i+1 < len(list) || len(remotes) > 0 {
			log.Warn("auto-restore: snapshot does not verify, trying an older one", zap.String("snapshot", s.Name), zap.Error(err))
		}
	}
	if len(remotes) == 0 {
		if len(list) > 0 {
			return "", fmt.Errorf("%w: none of %d snapshots in %s restored (the service was not started): %w",
				ErrRestoreFailed, len(list), cfg.Dir, errors.Join(errs...))
		}
		log.Info("auto-restore: data directory is empty and there is no snapshot: starting with empty data",
			zap.String("source", first), zap.String("dir", cfg.Dir))
		return "", nil
	}
	// The new-node, new-volume case: no usable local snapshot, try the remotes.
	rs, err := RestoreFromRemotes(ctx, cfg, remotes, "", cfg.Dir, opts, log)
	switch {
	case errors.Is(err, ErrRemoteUnavailable):
		return "", fmt.Errorf("%w: not starting the service on empty data while a remote that may hold its snapshots cannot be read "+
			"(fix the remote in SNAPVISOR_REMOTES or its credentials; to start with empty data on purpose, set SNAPVISOR_RESTORE=never once): %w",
			ErrRestoreFailed, err)
	case err != nil && len(errs) > 0:
		return "", fmt.Errorf("%w: %w (and none of %d local snapshots verifies: %w)", ErrRestoreFailed, err, len(list), errors.Join(errs...))
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrRestoreFailed, err)
	case rs.Key == "" && len(errs) > 0:
		return "", fmt.Errorf("%w: none of %d snapshots in %s restored and the remotes have none (the service was not started): %w",
			ErrRestoreFailed, len(list), cfg.Dir, errors.Join(errs...))
	case rs.Key == "":
		log.Info("auto-restore: data directory is empty and neither the snapshot directory nor the remotes have a snapshot: starting with empty data",
			zap.String("source", first), zap.String("dir", cfg.Dir), zap.Int("remotes", len(remotes)))
		return "", nil
	}
	return rs.Key, nil
}

// emptySources reports whether auto-restore has work: the first source is
// missing or empty. The options discard the current contents when every
// source is empty (nothing to keep).
func emptySources(cfg snapshot.Config, log *zap.Logger) (snapshot.RestoreOptions, bool, error) {
	first := cfg.Sources[0]
	empty, err := snapshot.IsEmpty(first)
	if err != nil {
		return snapshot.RestoreOptions{}, false, fmt.Errorf("auto-restore: inspect %s: %w", first, err)
	}
	if !empty {
		log.Info("auto-restore: data present, nothing to restore", zap.String("source", first))
		return snapshot.RestoreOptions{}, false, nil
	}
	discard := true // nothing to keep when every source is empty
	for _, s := range cfg.Sources[1:] {
		if e, _ := snapshot.IsEmpty(s); !e {
			discard = false
		}
	}
	return snapshot.RestoreOptions{DiscardCurrent: discard}, true, nil
}

// unusable reports whether err says that a snapshot itself is bad (checksum
// mismatch, corrupt or truncated archive): another snapshot may do.
func unusable(err error) bool {
	return errors.Is(err, snapshot.ErrChecksum) || errors.Is(err, snapshot.ErrCorrupt)
}

// candidate is one remote copy of a snapshot.
type candidate struct {
	s  remote.Remote
	rs remote.Snapshot
}

// RestoreFromRemotes downloads a snapshot named cfg.Name from the stores and
// restores it into cfg.Sources. key "" means the newest that verifies: every
// snapshot of every store, newest first, the stores' order breaking ties (so
// another store's copy of the same snapshot comes next). Otherwise only key
// is tried, on each store in turn. It moves on from a candidate only when the
// snapshot does not verify or has vanished, or when the next candidate is a
// copy of the same snapshot; any other failure (a local fault, a remote that
// cannot deliver) is returned, so older data is never restored silently.
//
// The download goes into keepDir, where it stays (it is removed again if it
// does not verify), or, when keepDir is "", into a temporary directory beside
// the first source (same file system, not inside the data), removed
// afterwards. It returns the restored snapshot, or a zero RemoteSnapshot and
// no error when no store has one; a store that cannot be listed makes it
// fail with ErrRemoteUnavailable when no other store has a candidate.
func RestoreFromRemotes(ctx context.Context, cfg snapshot.Config, stores []remote.Remote, key, keepDir string, opts snapshot.RestoreOptions, log *zap.Logger) (remote.Snapshot, error) {
	var cands []candidate
	lists, listErrs := remote.ListAll(ctx, stores, cfg.Name, "restore: cannot list remote", log)
	for i, list := range lists {
		for _, rs := range list {
			if key == "" || rs.Key == key {
				cands = append(cands, candidate{stores[i], rs})
			}
		}
	}
	if len(cands) == 0 {
		if len(listErrs) > 0 {
			return remote.Snapshot{}, fmt.Errorf("%w and no other one has a snapshot named %s-*: %w",
				ErrRemoteUnavailable, cfg.Name, errors.Join(listErrs...))
		}
		if key != "" {
			return remote.Snapshot{}, fmt.Errorf("restore: no snapshot %s on %s", key, storeNames(stores))
		}
		return remote.Snapshot{}, nil
	}
	if len(listErrs) > 0 {
		log.Warn("restore: some remotes could not be listed; restoring from the others", zap.Int("unlisted", len(listErrs)))
	}
	// Newest first; the stable sort keeps the stores' order for equal snapshots.
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i].rs, cands[j].rs
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.Key > b.Key
	})

	dir := keepDir
	if dir == "" {
		first, err := filepath.Abs(cfg.Sources[0])
		if err != nil {
			return remote.Snapshot{}, fmt.Errorf("restore: %w", err)
		}
		parent := filepath.Dir(first)
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return remote.Snapshot{}, fmt.Errorf("restore: %w", err)
		}
		pattern := "." + filepath.Base(first) + ".fetch-*"
		if stale, _ := filepath.Glob(filepath.Join(parent, pattern)); len(stale) > 0 {
			for _, d := range stale { // downloads of a run that was killed
				log.Info("restore: removing a leftover download directory", zap.String("path", d))
				os.RemoveAll(d)
			}
		}
		if dir, err = os.MkdirTemp(parent, pattern); err != nil {
			return remote.Snapshot{}, fmt.Errorf("restore: temporary download directory beside %s: %w", first, err)
		}
		defer os.RemoveAll(dir)
	}

	var errs []error
	for i, c := range cands {
		log.Info("restore: downloading from remote", zap.String("remote", c.s.Name()), zap.String("key", c.rs.Key), zap.Int64("size", c.rs.Size))
		fctx, cancel := c.s.WithTimeout(ctx)
		p, err := remote.Fetch(fctx, c.s, c.rs.Key, dir)
		err = remote.TimeoutError(fctx, err)
		cancel()
		if err == nil {
			log.Info("restore: restoring the downloaded snapshot", zap.String("key", c.rs.Key), zap.String("source", cfg.Sources[0]))
			if err = snapshot.Restore(ctx, cfg, p, opts, log); err == nil {
				log.Info("restore: done", zap.String("remote", c.s.Name()), zap.String("key", c.rs.Key))
				return c.rs, nil
			}
			if unusable(err) || keepDir == "" {
				// A bad copy must not stay to shadow the remotes next time.
				os.Remove(p)
				os.Remove(p + snapshot.SumSuffix)
			}
		}
		err = fmt.Errorf("%s %s: %w", c.s.Name(), c.rs.Key, err)
		errs = append(errs, err)
		next := i+1 < len(cands)
		sameNext := next && cands[i+1].rs.Key == c.rs.Key
		switch {
		case next && (unusable(err) || vanished(err)):
			log.Warn("restore: remote snapshot unusable, trying the next", zap.String("remote", c.s.Name()), zap.String("key", c.rs.Key), zap.Error(err))
		case sameNext && remoteFault(err):
			log.Warn("restore: download failed, trying the same snapshot on the next remote", zap.String("remote", c.s.Name()), zap.String("key", c.rs.Key), zap.Error(err))
		case !next && (unusable(err) || vanished(err)):
			return remote.Snapshot{}, fmt.Errorf("none of the %d remote snapshots verifies: %w", len(cands), errors.Join(errs...))
		case remoteFault(err):
			return remote.Snapshot{}, fmt.Errorf("the newest remote snapshot could not be downloaded, and older ones are not tried "+
				"(they would restore older data); fix the remote, or restore an older one on purpose with `entrypoint restore --from URL NAME`: %w", errors.Join(errs...))
		default:
			return remote.Snapshot{}, fmt.Errorf("restoring a remote snapshot failed for a reason that is not the snapshot's, so older ones are not tried: %w", err)
		}
	}
	return remote.Snapshot{}, errors.Join(errs...) // not reached: the last candidate returns
}

// vanished reports a snapshot that was listed but is gone (deleted meanwhile).
func vanished(err error) bool { return errors.Is(err, fs.ErrNotExist) && isStoreError(err) }

// remoteFault reports a failure of the remote side (after its retries): the
// store could not deliver, as opposed to a fault of the local disk.
func remoteFault(err error) bool { return isStoreError(err) || errors.Is(err, remote.ErrTimeout) }

func isStoreError(err error) bool {
	var se *store.Error
	return errors.As(err, &se)
}

func storeNames(stores []remote.Remote) string {
	names := make([]string, len(stores))
	for i, s := range stores {
		names[i] = s.Name()
	}
	return strings.Join(names, ", ")
}
