// Package rotation decides which snapshots to keep and which to delete. It is
// pure: no clock, no file system; the caller lists this instance's snapshots,
// calls Decide and deletes what the Decision says.
//
// # The rule
//
// The kept set is the union of:
//
//   - the newest snapshot, always, whatever the policy ("newest");
//   - the newest Keep scheduled snapshots, and each on-demand snapshot while
//     it is among the newest Keep of all ("last N"; see On-demand snapshots);
//   - when MaxAge is set, every snapshot at most MaxAge old at now ("within 30d");
//   - for each GFS rule (Hourly, Daily, Weekly, Monthly, Yearly) with N > 0,
//     what restic's `forget --keep-hourly/daily/weekly/monthly/yearly N` keeps.
//
// Everything else is deleted, except what the shrink guard holds (below).
//
// Without GFS rules (and without on-demand or suspect snapshots) this is
// exactly section 6.2 of the backup framework document: with fewer than Keep
// snapshots all are kept (they are all among the newest Keep); otherwise the
// newest Keep are kept and, beyond them, those older than MaxAge are deleted
// (MaxAge unset: all beyond Keep are deleted).
//
// With GFS rules Keep plays the part of restic's --keep-last and MaxAge the
// part of --keep-within (measured from now rather than from the newest
// snapshot, as 6.2 does).
//
// # GFS, as restic forget does it
//
// For each rule separately, snapshots are walked newest to oldest; a snapshot
// is kept when its bucket (UTC hour, UTC day, ISO week, UTC month, UTC year)
// differs from the bucket of the last snapshot that rule kept, until N buckets
// have been kept. Like restic since 0.16, when a rule still has buckets left
// at the oldest snapshot, the oldest snapshot is kept too (reason suffix
// "(oldest)"), so that a young history is not thinned before the rule is full.
// Buckets use UTC whatever the snapshots' location, so that the result does
// not depend on the host's time zone.
//
// # On-demand snapshots
//
// A snapshot taken on request (Snapshot.OnDemand: `entrypoint snapshot` or
// POST /snapshot to a running entrypoint) never pushes a scheduled one out:
// Keep counts scheduled snapshots only, and an on-demand snapshot is kept by
// Keep only while it is among the newest Keep snapshots of all. A storm of
// requests therefore keeps at most Keep on-demand snapshots besides the Keep
// scheduled ones, and deletes no scheduled snapshot. GFS buckets and MaxAge
// treat both alike (an on-demand snapshot may be the newest of its day), and
// the newest snapshot is kept whatever it is.
//
// # The shrink guard
//
// A fresh or mis-mounted volume makes snapshots of an empty source; once Keep
// of them exist, plain rotation would have deleted every good snapshot. So a
// snapshot is suspect when
//
//   - it is known to hold no file (Snapshot.Empty) while an older good
//     snapshot that is not known to be empty exists, unless that one is of
//     the same Format and at most 1/16 larger (it most likely held nothing
//     either: the caller knows Empty only for the snapshots it took itself,
//     and archives of an empty source differ by a few bytes of header times);
//   - or its Size times 10 is less than the Size of the nearest older good
//     snapshot of the same Format (compression and encryption), that is, it
//     shrank below 10% in one step. A gradual shrink is never suspect, since
//     each snapshot is compared with its good predecessor; sizes of different
//     formats, and unknown sizes (0), are never compared.
//
// "Good" means not suspect, decided from the oldest snapshot to the newest.
// Unless Policy.AllowShrink is set, the good snapshots are decided as if the
// suspect ones did not exist, and the suspect ones by the policy over all
// snapshots: Delete = Decide(good).Delete ∪ (Decide(all).Delete ∩ suspect).
// So no good snapshot is ever deleted to make room for suspect ones (those
// kept only for this are listed in Decision.Held), and at most Keep suspect
// snapshots accumulate besides (plus what MaxAge and GFS keep). With
// AllowShrink the policy applies to all snapshots alike: the older, larger
// snapshots are rotated away as usual, and once they are gone the newer ones
// are compared with each other and no longer suspect.
//
// # Safety
//
// Decide never deletes the newest snapshot, and deletes nothing at all when
// the policy is invalid (see Policy.Validate). The caller must pass only
// complete snapshots of this instance: the newest input is the one kept.
package rotation

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"snapvisor/config"
)

// Snapshot is one snapshot of this instance: its name (file name), its time,
// and what the shrink guard and the on-demand rule need to know about it.
type Snapshot struct {
	Name string
	Time time.Time
	// Size is the archive's size in bytes; 0 means unknown (never suspect by size).
	Size int64
	// Format is the archive's compression and encryption (ArchiveFormat):
	// sizes are compared only between snapshots of one Format.
	Format string
	// Empty means the snapshot is known to hold no file (the run that took
	// it counted none); false also means unknown.
	Empty bool
	// OnDemand means the snapshot was taken on request rather than by the
	// schedule; false also means unknown (it then counts as scheduled).
	OnDemand bool
}

// ArchiveFormat is the Format of a snapshot compressed with compression and
// encrypted with encryption, e.g. "gzip+aes256-gcm".
func ArchiveFormat(compression, encryption string) string {
	return compression + "+" + encryption
}

// shrinkFactor is the shrink guard's ratio: a snapshot whose size times
// shrinkFactor is less than its good predecessor's is suspect.
const shrinkFactor = 10

// Policy is a retention policy; see the package documentation for the rule.
// The zero value is invalid (it would keep only the newest snapshot).
type Policy struct {
	Keep    int           // keep the newest Keep snapshots (KEEP, default 7)
	MaxAge  time.Duration // beyond Keep, keep snapshots at most this old (MAX_AGE); 0 = unset
	Hourly  int           // GFS: newest snapshot of each of the last Hourly UTC hours with snapshots
	Daily   int           // GFS: newest snapshot of each of the last Daily UTC days with snapshots
	Weekly  int           // GFS: newest snapshot of each of the last Weekly ISO weeks with snapshots
	Monthly int           // GFS: newest snapshot of each of the last Monthly UTC months with snapshots
	Yearly  int           // GFS: newest snapshot of each of the last Yearly UTC years with snapshots

	// AllowShrink (ALLOW_SHRINK) turns the shrink guard's holding off:
	// suspect snapshots are rotated like any other. They are still reported.
	AllowShrink bool
	// RotateBefore (ROTATE_BEFORE) is what the caller does when a snapshot
	// fails for lack of space: RotateBeforeOnENOSPC ("" too) or RotateBeforeNever.
	// Decide does not use it.
	RotateBefore string
}

// Values of Policy.RotateBefore (SNAPVISOR_ROTATE_BEFORE).
const (
	// RotateBeforeOnENOSPC: after a snapshot failed with ENOSPC, rotate the
	// local snapshots by MakeRoom before the next ones.
	RotateBeforeOnENOSPC = "on-enospc"
	// RotateBeforeNever: rotate only after a successful snapshot.
	RotateBeforeNever = "never"
)

// defaultKeep is the default of Policy.Keep (SNAPVISOR_KEEP).
const defaultKeep = 7

// Decision is the outcome of Decide: every input snapshot is in exactly one of
// Keep and Delete, both newest first.
type Decision struct {
	Keep    []Snapshot
	Delete  []Snapshot
	Reasons map[string][]string // for each kept snapshot's name, why it is kept, e.g. "newest", "last 7", "daily 2025-01-03"

	// Suspect lists the snapshots the shrink guard flagged, newest first
	// (also with AllowShrink, and whether kept or deleted).
	Suspect []Suspect
	// Held lists the good snapshots kept only because of the guard: the
	// policy over all snapshots would have deleted them (never with AllowShrink).
	Held []Snapshot
}

// Suspect is a snapshot flagged by the shrink guard, and the good snapshot it
// was compared with.
type Suspect struct {
	Snapshot
	Ref Snapshot // the nearest older good snapshot it was compared with
}

// String says why s is suspect, e.g. "snapshot-20250110T000000Z.tar.gz
// holds no file (118 bytes) after snapshot-20250109T000000Z.tar.gz (1048790
// bytes)" or "… has 2048 bytes, 0.2% of snapshot-… (1048790 bytes)".
func (s Suspect) String() string {
	if s.Empty {
		return fmt.Sprintf("%s holds no file (%d bytes) after %s (%d bytes)", s.Name, s.Size, s.Ref.Name, s.Ref.Size)
	}
	return fmt.Sprintf("%s has %d bytes, %.1f%% of %s (%d bytes)", s.Name, s.Size,
		100*float64(s.Size)/float64(max(s.Ref.Size, 1)), s.Ref.Name, s.Ref.Size)
}

// ReasonNewest is the reason given for the newest snapshot, which is always kept.
const ReasonNewest = "newest"

// ReasonInvalid is the reason given to every snapshot when the policy is invalid and nothing is deleted.
const ReasonInvalid = "invalid policy: nothing deleted"

// GFS reports whether any grandfather-father-son rule (Hourly … Yearly) is set.
func (p Policy) GFS() bool {
	return p.Hourly > 0 || p.Daily > 0 || p.Weekly > 0 || p.Monthly > 0 || p.Yearly > 0
}

// Validate reports what is wrong with p as *config.Error values (joined), named
// after the environment variables: negative counts or age, and Keep=0 with no
// other rule, which would keep nothing but the newest snapshot (set KEEP=1 to
// mean that).
func (p Policy) Validate() error {
	var errs []error
	for _, c := range p.counts() {
		if *c.n < 0 {
			errs = append(errs, config.Invalid(c.env, strconv.Itoa(*c.n), acceptedCount))
		}
	}
	if p.MaxAge < 0 {
		errs = append(errs, config.Invalid("MAX_AGE", config.FormatAge(p.MaxAge), acceptedAge))
	}
	switch p.RotateBefore {
	case "", RotateBeforeOnENOSPC, RotateBeforeNever:
	default:
		errs = append(errs, config.Invalid("ROTATE_BEFORE", p.RotateBefore, acceptedRotateBefore))
	}
	if p.Keep == 0 && p.MaxAge == 0 && !p.GFS() {
		errs = append(errs, config.Invalid("KEEP", "0",
			"a whole number ≥ 1; 0 only together with MAX_AGE or a KEEP_HOURLY/DAILY/WEEKLY/MONTHLY/YEARLY rule (KEEP=1 keeps only the newest snapshot)"))
	}
	return errors.Join(errs...)
}

const acceptedCount = "a whole number ≥ 0"

const acceptedRotateBefore = RotateBeforeOnENOSPC + " (after a snapshot failed for lack of space, delete the oldest snapshot beyond KEEP-1 before the next) or " + RotateBeforeNever

// MakeRoom is the policy that rotates before a snapshot on a disk that holds
// no more than Keep snapshots: Keep-1, never below 1 (Keep 0 or 1 unchanged);
// MaxAge, the GFS rules and the shrink guard as they are.
func (p Policy) MakeRoom() Policy {
	if p.Keep > 1 {
		p.Keep--
	}
	return p
}

type count struct {
	env, label string
	n          *int
}

func (p *Policy) counts() []count {
	return []count{
		{"KEEP", "last", &p.Keep},
		{"KEEP_HOURLY", "hourly", &p.Hourly},
		{"KEEP_DAILY", "daily", &p.Daily},
		{"KEEP_WEEKLY", "weekly", &p.Weekly},
		{"KEEP_MONTHLY", "monthly", &p.Monthly},
		{"KEEP_YEARLY", "yearly", &p.Yearly},
	}
}

// String describes p for logs, e.g. "last 7, within 30d, 7 daily, 4 weekly".
func (p Policy) String() string {
	var parts []string
	if p.Keep != 0 {
		parts = append(parts, fmt.Sprintf("last %d", p.Keep))
	}
	if p.MaxAge != 0 {
		parts = append(parts, "within "+config.FormatAge(p.MaxAge))
	}
	for _, c := range p.counts()[1:] {
		if *c.n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", *c.n, c.label))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "newest only")
	}
	if p.AllowShrink {
		parts = append(parts, "shrink allowed")
	}
	return strings.Join(parts, ", ")
}

// bucketRule is one GFS rule: how many buckets and how a time maps to its bucket label.
type bucketRule struct {
	label  string
	n      int
	bucket func(t time.Time) string // t is in UTC
}

func (p Policy) rules() []bucketRule {
	return []bucketRule{
		{"hourly", p.Hourly, func(t time.Time) string { return t.Format("2006-01-02T15") }},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// Decide applies p to snaps at time now. Input order is arbitrary; Keep and
// Delete are newest first, ties in time broken by name (greater name first).
// Snapshots sharing a name are collapsed into one (the latest time wins), so a
// name is never both kept and deleted. The newest snapshot is always kept; an
// invalid p (Validate fails) keeps everything. Suspect snapshots are held as
// the package documentation says.
func Decide(snaps []Snapshot, p Policy, now time.Time) Decision {
	list := normalize(snaps)
	d := Decision{Reasons: make(map[string][]string, len(list))}
	if len(list) == 0 {
		return d
	}
	suspect := suspects(list)
	all := reasons(list, p, now)
	kept := all
	if len(suspect) > 0 && !p.AllowShrink {
		// The good ones are decided as if the suspect ones did not exist.
		var good []Snapshot
		var at []int
		for i, s := range list {
			if _, ok := suspect[i]; !ok {
				good = append(good, s)
				at = append(at, i)
			}
		}
		kept = make([][]string, len(list))
		for i := range list {
			if _, ok := suspect[i]; ok {
				kept[i] = all[i]
			}
		}
		for j, r := range reasons(good, p, now) {
			kept[at[j]] = r
			if len(r) > 0 && len(all[at[j]]) == 0 {
				d.Held = append(d.Held, list[at[j]])
			}
		}
	}
	for i, s := range list {
		if sus, ok := suspect[i]; ok {
			d.Suspect = append(d.Suspect, sus)
		}
		if len(kept[i]) > 0 {
			d.Keep = append(d.Keep, s)
			d.Reasons[s.Name] = kept[i]
		} else {
			d.Delete = append(d.Delete, s)
		}
	}
	return d
}

// reasons returns, for each snapshot of list (normalized), why p keeps it at
// now; none means delete.
func reasons(list []Snapshot, p Policy, now time.Time) [][]string {
	out := make([][]string, len(list))
	if len(list) == 0 {
		return out
	}
	out[0] = append(out[0], ReasonNewest)
	if p.Validate() != nil {
		for i := range list {
			out[i] = append(out[i], ReasonInvalid)
		}
		return out
	}
	scheduled := 0 // scheduled snapshots newer than list[i]
	for i, s := range list {
		// Keep counts scheduled snapshots; an on-demand one is kept while
		// it is among the newest Keep of all.
		if (!s.OnDemand && scheduled < p.Keep) || (s.OnDemand && i < p.Keep) {
			out[i] = append(out[i], fmt.Sprintf("last %d", p.Keep))
		}
		if !s.OnDemand {
			scheduled++
		}
		if p.MaxAge > 0 && now.Sub(s.Time) <= p.MaxAge {
			out[i] = append(out[i], "within "+config.FormatAge(p.MaxAge))
		}
	}
	for _, r := range p.rules() {
		left, last := r.n, ""
		for i, s := range list {
			if left <= 0 {
				break
			}
			b := r.bucket(s.Time.UTC())
			switch {
			case i == 0 || b != last:
				out[i] = append(out[i], r.label+" "+b)
			case i == len(list)-1:
				out[i] = append(out[i], r.label+" "+b+" (oldest)")
			default:
				continue
			}
			last = b
			left--
		}
	}
	return out
}

// suspects finds the shrink guard's suspect snapshots in list (normalized,
// newest first), by index, walking from the oldest to the newest.
func suspects(list []Snapshot) map[int]Suspect {
	out := map[int]Suspect{}
	var (
		prevSized = map[string]Snapshot{} // per Format: the nearest older good snapshot of known size
		prevFull  *Snapshot               // the nearest older good snapshot not known to be empty
	)
	for i := len(list) - 1; i >= 0; i-- {
		s := list[i]
		switch ref, sized := prevSized[s.Format]; {
		case s.Empty && prevFull != nil && !(prevFull.Format == s.Format && s.Size > 0 && prevFull.Size > 0 && prevFull.Size*16 <= s.Size*17):
			out[i] = Suspect{Snapshot: s, Ref: *prevFull}
			continue
		case !s.Empty && sized && s.Size > 0 && s.Size*shrinkFactor < ref.Size:
			out[i] = Suspect{Snapshot: s, Ref: ref}
			continue
		}
		if s.Size > 0 {
			prevSized[s.Format] = s
		}
		if !s.Empty {
			prevFull = &list[i]
		}
	}
	return out
}

// normalize returns a copy of snaps without duplicate names, newest first.
func normalize(snaps []Snapshot) []Snapshot {
	byName := make(map[string]int, len(snaps))
	list := make([]Snapshot, 0, len(snaps))
	for _, s := range snaps {
		if i, ok := byName[s.Name]; ok {
			if s.Time.After(list[i].Time) {
				list[i].Time = s.Time
			}
			continue
		}
		byName[s.Name] = len(list)
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(b.Name, a.Name)
	})
	return list
}
