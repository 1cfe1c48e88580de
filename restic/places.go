package restic

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/restic/chunker"
	"go.uber.org/zap"

	"snapvisor/config"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// Settings are the restic format's variables. RESTIC_PASSWORD and
// RESTIC_PASSWORD_FILE are the restic CLI's own names, so that the CLI
// works in the same container unchanged; the file is read as the CLI
// reads it, white space around the password trimmed.
type Settings struct {
	Password    config.Secret `envconfig:"RESTIC_PASSWORD" file:"trimspace" desc:"password of the restic repositories (SNAPVISOR_FORMAT=restic), the restic CLI's own variable"`
	Host        string        `envconfig:"SNAPVISOR_HOST" desc:"hostname recorded in restic snapshots; parents and auto-restore look snapshots up by it (default SNAPVISOR_NAME, so a recreated container finds its own)"`
	PruneBudget time.Duration `envconfig:"SNAPVISOR_PRUNE_BUDGET" default:"10m" desc:"time a restic-format run may spend pruning unreferenced data after forgetting snapshots; the repack step is skipped when it would not fit (0: no prune)"`
	LockWait    time.Duration `envconfig:"SNAPVISOR_LOCK_WAIT" default:"1m" desc:"how long a restic-format snapshot, restore or prune waits for another client's conflicting lock (restic CLI, another entrypoint) before giving up on that repository"`
}

// Validate checks the settings when the restic format is on.
func (s Settings) Validate() error {
	if s.Password.Reveal() == "" {
		return &config.Error{Var: "RESTIC_PASSWORD", Secret: true,
			Accepted: "the repositories' password in RESTIC_PASSWORD, or a file holding it in RESTIC_PASSWORD_FILE (SNAPVISOR_FORMAT=restic needs one)"}
	}
	if s.PruneBudget < 0 {
		return config.Invalid("PRUNE_BUDGET", s.PruneBudget.String(), "a duration such as 10m (0: no prune)")
	}
	if s.LockWait < 0 {
		return config.Invalid("LOCK_WAIT", s.LockWait.String(), "a duration such as 1m (0: do not wait)")
	}
	return nil
}

// HostOr is the snapshot hostname: SNAPVISOR_HOST, else name.
func (s Settings) HostOr(name string) string {
	if s.Host != "" {
		return s.Host
	}
	return name
}

// OpenAll opens the repository on every store and loads its index. With
// create, a store without a repository gets a new one (version 2); the new
// ones take the chunker polynomial of the first existing repository we
// could open (else one new polynomial for all), so that content is chunked
// once. errs[i] is store i's failure (repos[i] is nil then).
func OpenAll(ctx context.Context, stores []store.Store, pw Password, create bool, timeout time.Duration) (repos []*Repo, errs []error) {
	return (*Keys)(nil).OpenAll(ctx, stores, pw, create, timeout)
}

// Keys remembers the repositories a long-running process opened, so that
// the next run skips the key derivation (scrypt: 16 MiB and a good part of
// a second on a small machine, per repository) when the repository's
// config is still the one the key opened. The zero value is ready; a nil
// *Keys remembers nothing.
type Keys struct {
	mu    sync.Mutex
	repos map[string]*Repo // by store name
}

func (k *Keys) open(ctx context.Context, st store.Store, pw Password) (*Repo, error) {
	if k == nil {
		return Open(ctx, st, pw)
	}
	k.mu.Lock()
	old := k.repos[st.Name()]
	k.mu.Unlock()
	if old != nil {
		r := &Repo{st: st, name: st.Name(), key: old.key, keyID: old.keyID, cfg: old.cfg}
		if err := r.reopen(ctx); err == nil {
			return r, nil
		}
	}
	r, err := Open(ctx, st, pw)
	if err == nil {
		k.remember(r)
	}
	return r, err
}

func (k *Keys) remember(r *Repo) {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.repos == nil {
		k.repos = map[string]*Repo{}
	}
	k.repos[r.name] = r
}

// OpenAll is the package's OpenAll, remembering keys (see Keys).
func (k *Keys) OpenAll(ctx context.Context, stores []store.Store, pw Password, create bool, timeout time.Duration) (repos []*Repo, errs []error) {
	repos, errs = make([]*Repo, len(stores)), make([]error, len(stores))
	missing := []int{}
	for i, st := range stores {
		err := withTimeout(ctx, timeout, func(ctx context.Context) error {
			r, err := k.open(ctx, st, pw)
			repos[i] = r
			return err
		})
		switch {
		case errors.Is(err, ErrNoRepository) && create:
			missing = append(missing, i)
		case err != nil:
			errs[i] = err
		}
	}
	var pol chunker.Pol
	for _, r := range repos {
		if r != nil {
			pol = r.cfg.ChunkerPolynomial
			break
		}
	}
	if pol == 0 && len(missing) > 0 {
		var err error
		if pol, err = chunker.RandomPolynomial(); err != nil {
			for _, i := range missing {
				errs[i] = err
			}
			return repos, errs
		}
	}
	for _, i := range missing {
		errs[i] = withTimeout(ctx, timeout, func(ctx context.Context) error {
			r, err := Init(ctx, stores[i], pw, pol)
			repos[i] = r
			if err == nil {
				k.remember(r)
			}
			return err
		})
	}
	for i, r := range repos {
		if r == nil || errs[i] != nil {
			repos[i] = nil
			continue
		}
		errs[i] = withTimeout(ctx, timeout, func(ctx context.Context) error {
			_, err := r.LoadIndex(ctx)
			return err
		})
		if errs[i] != nil {
			repos[i] = nil
		}
	}
	return repos, errs
}

func withTimeout(ctx context.Context, d time.Duration, fn func(context.Context) error) error {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return fn(ctx)
}

// Take takes one snapshot into every repository under a non-exclusive lock
// (waiting up to lockWait for an exclusive one, such as a prune, to end),
// with the index read under that lock.
// A repository whose lock cannot be taken fails alone.
func Take(ctx context.Context, repos []*Repo, lockWait time.Duration, opts BackupOptions) ([]BackupResult, error) {
	var locked []*Repo
	var locks []*Lock
	res := make([]BackupResult, len(repos))
	at := map[*Repo]int{}
	for i, r := range repos {
		res[i].Repo = r
		var l *Lock
		err := withTimeout(ctx, opts.Timeout, func(ctx context.Context) error {
			var err error
			if l, err = r.Lock(ctx, false, lockWait); err != nil {
				return err
			}
			// The index is read again under the lock: one read before it
			// may predate a prune (ours or the CLI's) that removed blobs
			// this snapshot would then reference without storing them.
			if _, err = r.LoadIndex(ctx); err != nil {
				l.Unlock()
			}
			return err
		})
		if err != nil {
			res[i].Err = err
			continue
		}
		locks = append(locks, l)
		locked = append(locked, r)
		at[r] = i
	}
	defer func() {
		for _, l := range locks {
			l.Unlock()
		}
	}()
	if len(locked) == 0 {
		return res, fmt.Errorf("no repository could be locked: %w", errors.Join(errsOf(res)...))
	}
	out, err := Backup(ctx, locked, opts)
	for _, o := range out {
		res[at[o.Repo]] = o
	}
	return res, err
}

// Candidate is a snapshot that a restore may use, and where it is.
type Candidate struct {
	Repo     *Repo
	Snapshot *Snapshot
}

// Candidates lists the snapshots of host (every host when empty) in every
// repository, newest first; ties keep the repositories' order.
func Candidates(ctx context.Context, repos []*Repo, host string) ([]Candidate, []error) {
	var out []Candidate
	var errs []error
	for _, r := range repos {
		if r == nil {
			continue
		}
		snaps, err := r.Snapshots(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range snaps {
			if host == "" || s.Hostname == host {
				out = append(out, Candidate{r, s})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Snapshot.Time.After(out[j].Snapshot.Time) })
	return out, errs
}

// FindSnapshot finds a snapshot by ID or unique ID prefix, or "latest" of host.
func FindSnapshot(snaps []*Snapshot, ref, host string) (*Snapshot, error) {
	if ref == "" || ref == "latest" {
		for i := len(snaps) - 1; i >= 0; i-- {
			if host == "" || snaps[i].Hostname == host {
				return snaps[i], nil
			}
		}
		return nil, fmt.Errorf("no snapshot of host %q", host)
	}
	var found *Snapshot
	for _, s := range snaps {
		if strings.HasPrefix(s.ID.String(), strings.ToLower(ref)) {
			if found != nil {
				return nil, fmt.Errorf("snapshot ID prefix %q is ambiguous", ref)
			}
			found = s
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no snapshot %q", ref)
	}
	return found, nil
}

// RestoreSnapshot restores snapshot sn into the sources of cfg exactly as an
// archive restore does (snapshot.RestoreWith: staged beside each source,
// synced, swapped; nothing changed unless every blob was read and
// verified). Each source is taken from the snapshot path equal to it, else
// the one with its base name. A non-exclusive lock is held meanwhile.
func RestoreSnapshot(ctx context.Context, r *Repo, sn *Snapshot, cfg snapshot.Config, lockWait time.Duration, opts snapshot.RestoreOptions, log *zap.Logger) (RestoreStats, error) {
	var total RestoreStats
	l, err := r.Lock(ctx, false, lockWait)
	if err != nil {
		return total, err
	}
	defer l.Unlock()
	x := r.index
	if x == nil {
		if x, err = r.LoadIndex(ctx); err != nil {
			return total, err
		}
	}
	what := fmt.Sprintf("restic snapshot %s from %s", sn.ID.Str(), r.name)
	fill := func(ctx context.Context, staging map[string]string) error {
		for _, src := range cfg.Sources {
			top := path.Base(path.Clean(src))
			into, ok := staging[top]
			if !ok {
				continue
			}
			p, err := snapshotPathFor(sn, src)
			if err != nil {
				return err
			}
			n, err := r.FindPath(ctx, x, sn, p)
			if err != nil {
				return err
			}
			st, err := r.RestoreTree(ctx, x, n, into, RestoreOptions{Chown: os.Geteuid() == 0})
			total.Files += st.Files
			total.Dirs += st.Dirs
			total.Links += st.Links
			total.Bytes += st.Bytes
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := snapshot.RestoreWith(ctx, cfg, what, fill, opts, log); err != nil {
		return total, err
	}
	return total, nil
}

// snapshotPathFor picks the path of sn that holds source src.
func snapshotPathFor(sn *Snapshot, src string) (string, error) {
	abs := path.Clean(src)
	for _, p := range sn.Paths {
		if path.Clean(p) == abs {
			return p, nil
		}
	}
	var match []string
	for _, p := range sn.Paths {
		if path.Base(path.Clean(p)) == path.Base(abs) {
			match = append(match, p)
		}
	}
	if len(match) == 1 {
		return match[0], nil
	}
	return "", fmt.Errorf("snapshot %s holds no path for source %s (its paths: %s)", sn.ID.Str(), src, strings.Join(sn.Paths, ", "))
}
