package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"snapvisor/remote"
	"snapvisor/rotation"
	"snapvisor/seal"
	"snapvisor/store"
)

// Replication (SNAPVISOR_REPLICATE_SCHEDULE) reconciles the remotes: every
// snapshot inside the retention that exists on any remote (or in the local
// snapshot directory) is copied to every remote that lacks it, from
// whichever copy verifies (remote.Copy checks the bytes against the
// source's .sha256 on the way and writes the destination's .sha256 last). A
// copy that fails verification is reported and replaced from a good one; a
// remote whose lease another writer holds is a source only. It runs in the
// runner's single slot (exclusive): never beside a snapshot, so never inside
// a freeze.

// ReplicaResult is one remote's outcome of a replication run.
type ReplicaResult struct {
	Remote string `json:"remote"`
	// Missing: snapshots of the retained set it lacked before the run, and
	// still lacks after it.
	MissingBefore int      `json:"missing_before"`
	Missing       int      `json:"missing"`
	Copied        []string `json:"copied,omitempty"`
	Replaced      []string `json:"replaced,omitempty"` // damaged copies replaced by good ones
	Bytes         int64    `json:"bytes"`
	Deleted       []string `json:"deleted,omitempty"` // rotation once the copies are in
	// Newest is its newest snapshot after the run; Lag how far it trails the
	// newest snapshot anywhere (0: it has it).
	Newest     string    `json:"newest,omitempty"`
	NewestTime time.Time `json:"newest_time,omitzero"`
	Lag        float64   `json:"lag_seconds"`
	Errors     []string  `json:"errors,omitempty"`
}

// ReplicateResult is the outcome of one replication run.
type ReplicateResult struct {
	Started  time.Time       `json:"started"`
	Duration time.Duration   `json:"duration_ns"`
	Retained int             `json:"retained"` // snapshots inside the retention, over all places
	Remotes  []ReplicaResult `json:"remotes,omitempty"`
	Damaged  []string        `json:"damaged,omitempty"` // copies that failed verification: "<key> on <remote>: why"
	Skipped  string          `json:"skipped,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// OK reports whether every remote holds the retained set and nothing failed.
func (r ReplicateResult) OK() bool {
	if r.Error != "" {
		return false
	}
	for _, rr := range r.Remotes {
		if rr.Missing > 0 || len(rr.Errors) > 0 {
			return false
		}
	}
	return true
}

// Replicate runs one replication now, in the runner's slot (it waits for a
// snapshot in progress). The error is ctx's when the slot was not free in
// time, or one that sums up what failed.
func (r *Runner) Replicate(ctx context.Context) (ReplicateResult, error) {
	var res ReplicateResult
	if err := r.exclusive(ctx, kindReplicate, func(ctx context.Context) { res = r.replicate(ctx) }); err != nil {
		return res, err
	}
	r.mu.Lock()
	r.lastReplication = &res
	r.mu.Unlock()
	r.notifyReplication(res)
	if !res.OK() {
		if res.Error != "" {
			return res, errors.New(res.Error)
		}
		return res, errors.New("replication incomplete: " + res.Summary())
	}
	return res, nil
}

// Summary names what failed, per remote, and the damaged copies found.
func (r ReplicateResult) Summary() string {
	var parts []string
	for _, rr := range r.Remotes {
		if rr.Missing > 0 || len(rr.Errors) > 0 {
			parts = append(parts, fmt.Sprintf("%s lacks %d: %s", rr.Remote, rr.Missing, strings.Join(rr.Errors, "; ")))
		}
	}
	if len(r.Damaged) > 0 {
		parts = append(parts, "damaged copies: "+strings.Join(r.Damaged, "; "))
	}
	return strings.Join(parts, "; ")
}

// place is where a copy of a snapshot can come from or go to: a remote
// (dest: replication writes there) or the local snapshot directory (a
// source only).
type place struct {
	s    store.Store
	rem  *remote.Remote // nil for the local directory
	name string
}

// damagedCopy records a copy that failed verification (a drill, a copy
// reading it), so that the next replication verifies it again and replaces it.
func (r *Runner) damagedCopy(remoteName, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.damaged == nil {
		r.damaged = make(map[string]bool)
	}
	r.damaged[remoteName+"\x00"+key] = true
}

func (r *Runner) isDamaged(remoteName, key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.damaged[remoteName+"\x00"+key]
}

func (r *Runner) repaired(remoteName, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.damaged, remoteName+"\x00"+key)
}

func (r *Runner) replicate(ctx context.Context) ReplicateResult {
	res := ReplicateResult{Started: time.Now()}
	log := r.log.With(zap.String("job", kindReplicate))
	defer func() {
		res.Duration = time.Since(res.Started)
		r.metrics.replicated(res)
	}()
	switch {
	case r.alt != nil && r.restic == nil:
		res.Skipped = "git format: every push brings each remote's branch up to date (fast-forward), so there is nothing to replicate"
		return res
	case r.alt != nil:
		res.Skipped = "restic format: use `entrypoint copy` between repositories; scheduled replication copies archives"
		return res
	case len(r.remotes) == 0:
		res.Skipped = "no remotes (SNAPVISOR_REMOTES)"
		return res
	}
	log.Info("replication starting", zap.Int("remotes", len(r.remotes)))

	// Every place and what it holds: the remotes, then the local directory.
	places := make([]place, 0, len(r.remotes)+1)
	for i := range r.remotes {
		places = append(places, place{s: r.remotes[i], rem: &r.remotes[i], name: r.remotes[i].Name()})
	}
	lists, _ := remote.ListAll(ctx, r.remotes, r.snap.Name, "replication: cannot list a remote", log)
	listed := make([]bool, len(places))
	for i := range r.remotes {
		listed[i] = lists[i] != nil
	}
	if r.snap.Dir != "" {
		if local, err := r.localPlace(ctx); err != nil {
			log.Warn("replication: local snapshots are not a source", zap.Error(err))
		} else {
			snaps, err := remote.ListSnapshots(ctx, local.s, r.snap.Name)
			if err == nil {
				places = append(places, local)
				lists = append(lists, snaps)
				listed = append(listed, true)
				defer local.s.Close()
			} else {
				local.s.Close()
				log.Warn("replication: list the local snapshots", zap.Error(err))
			}
		}
	}
	for i := range r.remotes {
		res.Remotes = append(res.Remotes, ReplicaResult{Remote: places[i].name})
		if !listed[i] {
			res.Remotes[i].Errors = append(res.Remotes[i].Errors, "cannot be listed: not replicated to this time")
		}
	}

	now := time.Now()
	plan := planReplication(lists, r.policy, now, r.mark)
	if len(places) > len(r.remotes) {
		plan.local = len(r.remotes)
	}
	res.Retained = len(plan.keep)
	for i := range r.remotes {
		if listed[i] {
			res.Remotes[i].MissingBefore = len(plan.missing(i))
		}
	}
	damaged := make(map[[2]string]string) // {place, key} → why
	noteDamaged := func(p int, key string, why error) {
		if _, seen := damaged[[2]string{places[p].name, key}]; !seen {
			damaged[[2]string{places[p].name, key}] = why.Error()
			res.Damaged = append(res.Damaged, fmt.Sprintf("%s on %s: %v", key, places[p].name, why))
			log.Error("replication: a copy fails verification; it is replaced from a good copy when there is one",
				zap.String("snapshot", key), zap.String("place", places[p].name), zap.Error(why))
		}
		if places[p].rem != nil {
			r.damagedCopy(places[p].name, key)
		}
	}

	// Copies already known or suspected to be damaged are checked first: a
	// drill or an earlier copy found them bad, or their sizes disagree.
	for _, key := range plan.keep {
		for _, p := range plan.suspects(key, func(p int) bool { return places[p].rem != nil && r.isDamaged(places[p].name, key) }) {
			vctx, cancel := withTimeoutOf(ctx, places[p])
			err := remote.VerifyCopy(vctx, places[p].s, key)
			cancel()
			switch {
			case errors.Is(err, remote.ErrChecksum):
				noteDamaged(p, key, err)
			case err == nil:
				r.repaired(places[p].name, key)
			default:
				log.Warn("replication: could not verify a suspect copy", zap.String("snapshot", key), zap.String("place", places[p].name), zap.Error(err))
			}
		}
	}

	// Each remote in turn, its missing and damaged snapshots newest first.
	for i := range r.remotes {
		rr := &res.Remotes[i]
		if !listed[i] {
			continue
		}
		var todo []string
		for _, key := range plan.keep {
			_, bad := damaged[[2]string{places[i].name, key}]
			if !plan.has[key][i] || bad {
				todo = append(todo, key)
			}
		}
		if len(todo) == 0 {
			continue
		}
		dest := r.remotes[i]
		lctx, cancel := dest.WithTimeout(ctx)
		err := r.holdLease(lctx, dest, log)
		cancel()
		if err != nil {
			rr.Errors = append(rr.Errors, "not written: "+err.Error())
			continue
		}
		for _, key := range todo {
			if ctx.Err() != nil {
				rr.Errors = append(rr.Errors, "stopped: "+ctx.Err().Error())
				break
			}
			_, replace := damaged[[2]string{places[i].name, key}]
			cr, err := r.copyFromAny(ctx, places, plan, i, key, replace, damaged, noteDamaged, log)
			if err != nil {
				rr.Errors = append(rr.Errors, fmt.Sprintf("%s: %v", key, err))
				continue
			}
			plan.has[key][i] = true
			rr.Bytes += cr.Bytes
			if replace {
				delete(damaged, [2]string{places[i].name, key})
				r.repaired(places[i].name, key)
				rr.Replaced = append(rr.Replaced, key)
			} else {
				rr.Copied = append(rr.Copied, key)
			}
		}
		if len(rr.Copied)+len(rr.Replaced) > 0 {
			// Now that it has the retained set, its own rotation leaves
			// exactly that set (the copies it had beyond it go).
			rctx, cancel := dest.WithTimeout(ctx)
			d, deleted, err := remote.Rotate(rctx, dest, r.snap.Name, r.policy, time.Now(), r.mark)
			cancel()
			r.noteRotation(d)
			if err != nil {
				rr.Errors = append(rr.Errors, "rotation: "+err.Error())
			}
			rr.Deleted = deleted
		}
	}

	// What each remote holds now, and how far it trails.
	newest := plan.newest()
	for i := range r.remotes {
		rr := &res.Remotes[i]
		if !listed[i] {
			continue
		}
		for _, key := range plan.keep {
			if _, bad := damaged[[2]string{places[i].name, key}]; !plan.has[key][i] || bad {
				rr.Missing++
			}
		}
		if s, ok := plan.newestOn(i); ok {
			rr.Newest, rr.NewestTime = s.Key, s.Time
			r.noteRemoteNewest(places[i].name, s)
		}
		switch {
		case newest.IsZero():
		case rr.Newest == "":
			// It holds none of them: it trails by at least the age of the oldest.
			rr.Lag = max(0, now.Sub(plan.snaps[plan.keep[len(plan.keep)-1]].Time).Seconds())
		default:
			rr.Lag = max(0, newest.Sub(rr.NewestTime).Seconds())
		}
	}
	if res.OK() {
		log.Info("replication done: every remote holds the retained snapshots", zap.Int("retained", res.Retained),
			zap.Duration("duration", time.Since(res.Started)), zap.Any("remotes", res.Remotes))
	} else {
		log.Error("replication incomplete", zap.String("problems", res.Summary()), zap.Strings("damaged", res.Damaged),
			zap.Duration("duration", time.Since(res.Started)))
	}
	return res
}

// copyFromAny copies key to places[dst] from the first place holding it
// whose copy verifies: the local directory first (no egress), then the
// remotes in order. A source whose copy fails verification is noted
// (noteDamaged) and the next one tried.
func (r *Runner) copyFromAny(ctx context.Context, places []place, plan *replicationPlan, dst int, key string, replace bool,
	damaged map[[2]string]string, noteDamaged func(int, string, error), log *zap.Logger) (remote.CopyResult, error) {
	var errs []error
	for _, src := range plan.sources(key, dst) {
		if _, bad := damaged[[2]string{places[src].name, key}]; bad {
			continue
		}
		cctx, cancel := withTimeoutOf(ctx, places[dst])
		start := time.Now()
		cr, err := remote.Copy(cctx, places[src].s, places[dst].s, key, remote.CopyOptions{Replace: replace})
		err = remote.TimeoutError(cctx, err)
		cancel()
		if err == nil {
			log.Info("replication: copied", zap.String("snapshot", key), zap.String("from", places[src].name), zap.String("to", places[dst].name),
				zap.Int64("bytes", cr.Bytes), zap.Bool("skipped", cr.Skipped), zap.Duration("duration", time.Since(start)))
			return cr, nil
		}
		if errors.Is(err, remote.ErrChecksum) && failedOn(err, places[src].s.Name()) {
			noteDamaged(src, key, err)
			errs = append(errs, err)
			continue
		}
		// The destination (or the transfer) failed: another source would not help.
		return cr, err
	}
	if len(errs) == 0 {
		return remote.CopyResult{}, fmt.Errorf("no copy to take it from")
	}
	return remote.CopyResult{}, fmt.Errorf("no copy verifies: %w", errors.Join(errs...))
}

// failedOn reports whether err's chain holds a *store.Error about the store
// named name (the source's verification error travels inside the
// destination's upload error).
func failedOn(err error, name string) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *store.Error:
		if e.Store == name {
			return true
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return failedOn(u.Unwrap(), name)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if failedOn(e, name) {
				return true
			}
		}
	}
	return false
}

// withTimeoutOf bounds ctx by the place's remote timeout (none for the local directory).
func withTimeoutOf(ctx context.Context, p place) (context.Context, context.CancelFunc) {
	if p.rem == nil {
		return context.WithCancel(ctx)
	}
	return p.rem.WithTimeout(ctx)
}

// localPlace opens the local snapshot directory as a store to copy from.
func (r *Runner) localPlace(ctx context.Context) (place, error) {
	dir, err := filepath.Abs(r.snap.Dir)
	if err != nil {
		return place{}, err
	}
	s, err := store.Open(ctx, (&url.URL{Scheme: "file", Path: dir}).String(), store.Config{}, r.log)
	if err != nil {
		return place{}, err
	}
	return place{s: s, name: "local " + r.snap.Dir}, nil
}

// replicationPlan is what a replication must do, decided from the places'
// listings alone (pure): the snapshots inside the retention over all of
// them, and who holds each.
type replicationPlan struct {
	keep  []string                   // retained keys, newest first
	snaps map[string]remote.Snapshot // by key: one listing of it
	has   map[string][]bool          // by key: has[key][place]
	sizes map[string][]int64         // by key: each place's listed size (-1: absent)
	local int                        // the local directory's place (-1: none), the first source
}

// planReplication decides the retained set of the union of lists (one per
// place, nil for a place that could not be listed) by policy p at now, with
// mark adding what the runner knows of each snapshot (rotation.Snapshot's
// Empty and OnDemand).
func planReplication(lists [][]remote.Snapshot, p rotation.Policy, now time.Time, mark func(*rotation.Snapshot)) *replicationPlan {
	pl := &replicationPlan{snaps: map[string]remote.Snapshot{}, has: map[string][]bool{}, sizes: map[string][]int64{}, local: -1}
	for i, list := range lists {
		for _, s := range list {
			if _, ok := pl.snaps[s.Key]; !ok {
				pl.snaps[s.Key] = s
				pl.has[s.Key] = make([]bool, len(lists))
				pl.sizes[s.Key] = make([]int64, len(lists))
				for j := range pl.sizes[s.Key] {
					pl.sizes[s.Key][j] = -1
				}
			}
			pl.has[s.Key][i] = true
			pl.sizes[s.Key][i] = s.Size
		}
	}
	in := make([]rotation.Snapshot, 0, len(pl.snaps))
	for _, s := range pl.snaps {
		rs := rotation.Snapshot{Name: s.Key, Time: s.Time, Size: s.Size,
			Format: rotation.ArchiveFormat(s.Compression, seal.FromSuffix(s.Key))}
		if mark != nil {
			mark(&rs)
		}
		in = append(in, rs)
	}
	for _, k := range rotation.Decide(in, p, now).Keep {
		pl.keep = append(pl.keep, k.Name)
	}
	sort.Slice(pl.keep, func(i, j int) bool {
		a, b := pl.snaps[pl.keep[i]], pl.snaps[pl.keep[j]]
		if !a.Time.Equal(b.Time) {
			return a.Time.After(b.Time)
		}
		return a.Key > b.Key
	})
	return pl
}

// missing returns the retained keys place i lacks.
func (pl *replicationPlan) missing(i int) []string {
	var out []string
	for _, k := range pl.keep {
		if !pl.has[k][i] {
			out = append(out, k)
		}
	}
	return out
}

// suspects returns the places holding key whose copy must be verified:
// flagged ones, and, when the holders' sizes disagree, every holder (which
// one is right is not known until each is hashed).
func (pl *replicationPlan) suspects(key string, flagged func(int) bool) []int {
	var out []int
	sizes := pl.sizes[key]
	disagree := false
	first := int64(-1)
	for _, n := range sizes {
		if n < 0 {
			continue
		}
		if first >= 0 && n != first {
			disagree = true
		}
		first = n
	}
	for i, n := range sizes {
		if n >= 0 && (disagree || flagged(i)) {
			out = append(out, i)
		}
	}
	return out
}

// sources returns the places holding key to copy it to dst from: the
// local directory first (no egress), then the others in order.
func (pl *replicationPlan) sources(key string, dst int) []int {
	var out []int
	if pl.local >= 0 && pl.local != dst && pl.has[key][pl.local] {
		out = append(out, pl.local)
	}
	for i, ok := range pl.has[key] {
		if ok && i != dst && i != pl.local {
			out = append(out, i)
		}
	}
	return out
}

// newest is the time of the newest retained snapshot (zero: none).
func (pl *replicationPlan) newest() time.Time {
	if len(pl.keep) == 0 {
		return time.Time{}
	}
	return pl.snaps[pl.keep[0]].Time
}

// newestOn returns the newest retained snapshot place i holds.
func (pl *replicationPlan) newestOn(i int) (remote.Snapshot, bool) {
	for _, k := range pl.keep {
		if pl.has[k][i] {
			return pl.snaps[k], true
		}
	}
	return remote.Snapshot{}, false
}

// noteRemoteNewest records a remote's newest snapshot for status.
func (r *Runner) noteRemoteNewest(name string, s remote.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.remoteNewest == nil {
		r.remoteNewest = make(map[string]remote.Snapshot)
	}
	if cur, ok := r.remoteNewest[name]; !ok || !cur.Time.After(s.Time) {
		r.remoteNewest[name] = s
	}
}

// RemoteState is one remote as status shows it: its newest snapshot as last
// seen (a push, a replication).
type RemoteState struct {
	Remote     string    `json:"remote"`
	Newest     string    `json:"newest,omitempty"`
	NewestTime time.Time `json:"newest_time,omitzero"`
}

// remoteStates lists every remote's newest known snapshot, in the remotes' order.
func (r *Runner) remoteStates() []RemoteState {
	out := make([]RemoteState, 0, len(r.remotes))
	for _, s := range r.remotes {
		st := RemoteState{Remote: s.Name()}
		if n, ok := r.remoteNewest[s.Name()]; ok {
			st.Newest, st.NewestTime = n.Key, n.Time
		}
		out = append(out, st)
	}
	return out
}
