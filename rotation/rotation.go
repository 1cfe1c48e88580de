// Package rotation decides which snapshots to keep and which to delete. It is
// pure: no clock, no file system; the caller lists this instance's snapshots,
// calls Decide and deletes what the Decision says.
//
// # The rule
//
// The kept set is the union of:
//
//   - the newest snapshot, always, whatever the policy ("newest");
//   - the newest Keep snapshots ("last N");
//   - when MaxAge is set, every snapshot at most MaxAge old at now ("within 30d");
//   - for each GFS rule (Hourly, Daily, Weekly, Monthly, Yearly) with N > 0,
//     what restic's `forget --keep-hourly/daily/weekly/monthly/yearly N` keeps.
//
// Everything else is deleted.
//
// Without GFS rules this is exactly section 6.2 of the backup framework
// document: with fewer than Keep snapshots all are kept (they are all among the
// newest Keep); otherwise the newest Keep are kept and, beyond them, those
// older than MaxAge are deleted (MaxAge unset: all beyond Keep are deleted).
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
// # Safety
//
// Decide never deletes the newest snapshot, and deletes nothing at all when
// the policy is invalid (see Policy.Validate). The caller must pass only
// good snapshots of this instance: the newest input is the one kept.
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

// Snapshot is one snapshot of this instance: its name (file name) and its time.
type Snapshot struct {
	Name string
	Time time.Time
}

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
}

// DefaultKeep is the default of Policy.Keep (SNAPVISOR_KEEP).
const DefaultKeep = 7

// Decision is the outcome of Decide: every input snapshot is in exactly one of
// Keep and Delete, both newest first.
type Decision struct {
	Keep    []Snapshot
	Delete  []Snapshot
	Reasons map[string][]string // for each kept snapshot's name, why it is kept, e.g. "newest", "last 7", "daily 2025-01-03"
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
		errs = append(errs, config.Invalid("MAX_AGE", FormatAge(p.MaxAge), acceptedAge))
	}
	if p.Keep == 0 && p.MaxAge == 0 && !p.GFS() {
		errs = append(errs, config.Invalid("KEEP", "0",
			"a whole number ≥ 1; 0 only together with MAX_AGE or a KEEP_HOURLY/DAILY/WEEKLY/MONTHLY/YEARLY rule (KEEP=1 keeps only the newest snapshot)"))
	}
	return errors.Join(errs...)
}

const acceptedCount = "a whole number ≥ 0"

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
		parts = append(parts, "within "+FormatAge(p.MaxAge))
	}
	for _, c := range p.counts()[1:] {
		if *c.n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", *c.n, c.label))
		}
	}
	if len(parts) == 0 {
		return "newest only"
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
// invalid p (Validate fails) keeps everything.
func Decide(snaps []Snapshot, p Policy, now time.Time) Decision {
	list := normalize(snaps)
	d := Decision{Reasons: make(map[string][]string, len(list))}
	if len(list) == 0 {
		return d
	}
	reasons := make([][]string, len(list))
	reasons[0] = append(reasons[0], ReasonNewest)

	if p.Validate() != nil {
		for i := range list {
			reasons[i] = append(reasons[i], ReasonInvalid)
		}
	} else {
		for i, s := range list {
			if i < p.Keep {
				reasons[i] = append(reasons[i], fmt.Sprintf("last %d", p.Keep))
			}
			if p.MaxAge > 0 && now.Sub(s.Time) <= p.MaxAge {
				reasons[i] = append(reasons[i], "within "+FormatAge(p.MaxAge))
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
					reasons[i] = append(reasons[i], r.label+" "+b)
				case i == len(list)-1:
					reasons[i] = append(reasons[i], r.label+" "+b+" (oldest)")
				default:
					continue
				}
				last = b
				left--
			}
		}
	}

	for i, s := range list {
		if len(reasons[i]) > 0 {
			d.Keep = append(d.Keep, s)
			d.Reasons[s.Name] = reasons[i]
		} else {
			d.Delete = append(d.Delete, s)
		}
	}
	return d
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
