package rotation

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"snapvisor/config"
)

// now is the fixed clock of every test: Friday 2025-01-10 12:00 UTC.
var now = mustTime("2025-01-10T12:00")

const layout = "2006-01-02T15:04"

func mustTime(s string) time.Time {
	t, err := time.Parse(layout, s)
	if err != nil {
		panic(err)
	}
	return t
}

// snaps builds snapshots named "app-<ts>" from UTC times in layout, in the given order.
func snaps(ts ...string) []Snapshot {
	out := make([]Snapshot, len(ts))
	for i, s := range ts {
		out[i] = Snapshot{Name: "app-" + s, Time: mustTime(s)}
	}
	return out
}

// days returns one timestamp per day at hh:00 from first to last inclusive, oldest first.
func days(first, last string, hh int) []string {
	var out []string
	end := mustTime(last + "T00:00")
	for d := mustTime(first + "T00:00"); !d.After(end); d = d.AddDate(0, 0, 1) {
		out = append(out, d.Add(time.Duration(hh)*time.Hour).Format(layout))
	}
	return out
}

// names maps timestamps to snapshot names.
func names(ts ...string) []string {
	out := make([]string, len(ts))
	for i, s := range ts {
		out[i] = "app-" + s
	}
	return out
}

func newestFirst(ts []string) []string {
	out := slices.Clone(ts)
	slices.Reverse(out)
	return out
}

func nameList(ss []Snapshot) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name
	}
	return out
}

// checkInvariants verifies what holds for every decision: a partition of the
// (name-deduplicated) input, both lists newest first, the newest kept, and
// reasons for exactly the kept snapshots.
func checkInvariants(t *testing.T, in []Snapshot, d Decision) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range in {
		want[s.Name] = true
	}
	got := map[string]bool{}
	for _, s := range append(slices.Clone(d.Keep), d.Delete...) {
		if got[s.Name] {
			t.Errorf("%s appears twice in the decision", s.Name)
		}
		got[s.Name] = true
	}
	if len(got) != len(want) {
		t.Errorf("decision covers %d snapshots, input has %d", len(got), len(want))
	}
	for n := range want {
		if !got[n] {
			t.Errorf("%s missing from the decision", n)
		}
	}
	for _, l := range [][]Snapshot{d.Keep, d.Delete} {
		if !slices.IsSortedFunc(l, func(a, b Snapshot) int { return b.Time.Compare(a.Time) }) {
			t.Errorf("not newest first: %v", nameList(l))
		}
	}
	if len(in) > 0 {
		newest := slices.MaxFunc(in, func(a, b Snapshot) int { return a.Time.Compare(b.Time) })
		if len(d.Keep) == 0 || !d.Keep[0].Time.Equal(newest.Time) {
			t.Errorf("newest snapshot %s not kept first: keep %v", newest.Name, nameList(d.Keep))
		}
	}
	if len(d.Reasons) != len(d.Keep) {
		t.Errorf("%d reasons for %d kept", len(d.Reasons), len(d.Keep))
	}
	for _, s := range d.Keep {
		if len(d.Reasons[s.Name]) == 0 {
			t.Errorf("kept %s without reason", s.Name)
		}
	}
}

func TestDecide_Table(t *testing.T) {
	ten := days("2025-01-01", "2025-01-10", 0) // 01-01T00:00 … 01-10T00:00
	// Every day at 03:00 from 2024-10-01 to 2025-01-10: 102 snapshots.
	season := days("2024-10-01", "2025-01-10", 3)

	tests := []struct {
		name    string
		in      []Snapshot
		p       Policy
		keep    []string            // timestamps, newest first
		reasons map[string][]string // by timestamp; only the listed ones are checked
	}{
		{
			name: "empty input",
			in:   nil,
			p:    Policy{Keep: 7},
			keep: nil,
		},
		{
			name: "fewer than KEEP keeps all",
			in:   snaps(ten[7:]...),
			p:    Policy{Keep: 7},
			keep: newestFirst(ten[7:]),
			reasons: map[string][]string{
				"2025-01-10T00:00": {"newest", "last 7"},
				"2025-01-08T00:00": {"last 7"},
			},
		},
		{
			name: "fewer than KEEP keeps all even older than MAX_AGE",
			in:   snaps(ten[:3]...),
			p:    Policy{Keep: 7, MaxAge: time.Hour},
			keep: newestFirst(ten[:3]),
		},
		{
			name: "exactly KEEP keeps all",
			in:   snaps(ten[3:]...),
			p:    Policy{Keep: 7},
			keep: newestFirst(ten[3:]),
		},
		{
			name: "beyond KEEP without MAX_AGE deletes all beyond",
			in:   snaps(ten...),
			p:    Policy{Keep: 7},
			keep: newestFirst(ten[3:]),
		},
		{
			name: "beyond KEEP with MAX_AGE deletes only those older",
			// 5d before now is 01-05T12:00: 01-06 … 01-10 are within.
			in:   snaps(ten...),
			p:    Policy{Keep: 3, MaxAge: 5 * day},
			keep: newestFirst(ten[5:]),
			reasons: map[string][]string{
				"2025-01-10T00:00": {"newest", "last 3", "within 5d"},
				"2025-01-08T00:00": {"last 3", "within 5d"},
				"2025-01-07T00:00": {"within 5d"},
			},
		},
		{
			name: "MAX_AGE boundary: exactly MAX_AGE old is kept",
			in:   snaps("2025-01-10T00:00", "2025-01-05T12:00", "2025-01-05T11:59"),
			p:    Policy{Keep: 1, MaxAge: 5 * day},
			keep: []string{"2025-01-10T00:00", "2025-01-05T12:00"},
		},
		{
			name: "MAX_AGE shorter than the KEEP span keeps KEEP",
			in:   snaps(ten...),
			p:    Policy{Keep: 4, MaxAge: day},
			keep: newestFirst(ten[6:]),
		},
		{
			name: "MAX_AGE longer than history keeps all",
			in:   snaps(ten...),
			p:    Policy{Keep: 2, MaxAge: 30 * day},
			keep: newestFirst(ten),
		},
		{
			name: "KEEP=0 with MAX_AGE is age only",
			in:   snaps(ten...),
			p:    Policy{MaxAge: 2 * day},
			keep: []string{"2025-01-10T00:00", "2025-01-09T00:00"},
		},
		{
			name: "newest kept although older than MAX_AGE and KEEP=0",
			in:   snaps(ten...),
			p:    Policy{MaxAge: time.Hour},
			keep: []string{"2025-01-10T00:00"},
			reasons: map[string][]string{
				"2025-01-10T00:00": {"newest"},
			},
		},
		{
			name: "newest kept when it is in the future (clock skew)",
			in:   snaps("2025-01-09T00:00", "2025-02-01T00:00", "2025-01-08T00:00"),
			p:    Policy{Keep: 1},
			keep: []string{"2025-02-01T00:00"},
		},
		{
			name: "invalid policy deletes nothing",
			in:   snaps(ten...),
			p:    Policy{},
			keep: newestFirst(ten),
			reasons: map[string][]string{
				"2025-01-10T00:00": {"newest", ReasonInvalid},
				"2025-01-01T00:00": {ReasonInvalid},
			},
		},
		{
			name: "negative count deletes nothing",
			in:   snaps(ten...),
			p:    Policy{Keep: 3, Daily: -1},
			keep: newestFirst(ten),
		},
		{
			name: "unsorted input",
			in: snaps("2025-01-03T00:00", "2025-01-09T00:00", "2025-01-01T00:00",
				"2025-01-10T00:00", "2025-01-05T00:00", "2025-01-02T00:00"),
			p:    Policy{Keep: 3},
			keep: []string{"2025-01-10T00:00", "2025-01-09T00:00", "2025-01-05T00:00"},
		},
		{
			name: "duplicate timestamps are ordered by name",
			in: []Snapshot{
				{Name: "app-a", Time: mustTime("2025-01-09T00:00")},
				{Name: "app-c", Time: mustTime("2025-01-09T00:00")},
				{Name: "app-b", Time: mustTime("2025-01-09T00:00")},
				{Name: "app-old", Time: mustTime("2025-01-01T00:00")},
			},
			p:    Policy{Keep: 2},
			keep: []string{"c", "b"}, // names() prefixes "app-"
		},
		{
			name: "duplicate timestamps: one per daily bucket",
			in: []Snapshot{
				{Name: "app-a", Time: mustTime("2025-01-09T00:00")},
				{Name: "app-b", Time: mustTime("2025-01-09T00:00")},
				{Name: "app-c", Time: mustTime("2025-01-08T00:00")},
				{Name: "app-d", Time: mustTime("2025-01-08T00:00")},
				{Name: "app-e", Time: mustTime("2025-01-07T00:00")},
			},
			p:    Policy{Daily: 2},
			keep: []string{"b", "d"},
		},
		{
			name: "duplicate names are collapsed, never both kept and deleted",
			in: []Snapshot{
				{Name: "app-x", Time: mustTime("2025-01-01T00:00")},
				{Name: "app-y", Time: mustTime("2025-01-05T00:00")},
				{Name: "app-x", Time: mustTime("2025-01-09T00:00")},
			},
			p:    Policy{Keep: 1},
			keep: []string{"x"},
		},

		// GFS, each rule alone, restic forget semantics.
		{
			name: "daily 2: newest of the two newest days",
			in: snaps("2025-01-07T06:00", "2025-01-07T18:00", "2025-01-08T06:00", "2025-01-08T18:00",
				"2025-01-09T06:00", "2025-01-09T18:00", "2025-01-10T06:00"),
			p:    Policy{Daily: 2},
			keep: []string{"2025-01-10T06:00", "2025-01-09T18:00"},
			reasons: map[string][]string{
				"2025-01-10T06:00": {"newest", "daily 2025-01-10"},
				"2025-01-09T18:00": {"daily 2025-01-09"},
			},
		},
		{
			name: "daily 5 with only 4 days also keeps the oldest (restic >= 0.16)",
			in: snaps("2025-01-07T06:00", "2025-01-07T18:00", "2025-01-08T06:00", "2025-01-08T18:00",
				"2025-01-09T06:00", "2025-01-09T18:00", "2025-01-10T06:00"),
			p: Policy{Daily: 5},
			keep: []string{"2025-01-10T06:00", "2025-01-09T18:00", "2025-01-08T18:00",
				"2025-01-07T18:00", "2025-01-07T06:00"},
			reasons: map[string][]string{
				"2025-01-07T18:00": {"daily 2025-01-07"},
				"2025-01-07T06:00": {"daily 2025-01-07 (oldest)"},
			},
		},
		{
			name: "hourly 2",
			in:   snaps("2025-01-10T09:15", "2025-01-10T10:05", "2025-01-10T10:40", "2025-01-10T11:10", "2025-01-10T11:50"),
			p:    Policy{Hourly: 2},
			keep: []string{"2025-01-10T11:50", "2025-01-10T10:40"},
			reasons: map[string][]string{
				"2025-01-10T10:40": {"hourly 2025-01-10T10"},
			},
		},
		{
			name: "hourly 4 with 3 hours: oldest is a new bucket anyway",
			in:   snaps("2025-01-10T09:15", "2025-01-10T10:05", "2025-01-10T10:40", "2025-01-10T11:10", "2025-01-10T11:50"),
			p:    Policy{Hourly: 4},
			keep: []string{"2025-01-10T11:50", "2025-01-10T10:40", "2025-01-10T09:15"},
			reasons: map[string][]string{
				"2025-01-10T09:15": {"hourly 2025-01-10T09"},
			},
		},
		{
			name: "weekly 3 across the year boundary (ISO 2025-W01 starts 2024-12-30)",
			in: snaps("2024-12-22T00:00", "2024-12-23T00:00", "2024-12-29T00:00", "2024-12-30T00:00",
				"2025-01-02T00:00", "2025-01-06T00:00", "2025-01-07T00:00"),
			p:    Policy{Weekly: 3},
			keep: []string{"2025-01-07T00:00", "2025-01-02T00:00", "2024-12-29T00:00"},
			reasons: map[string][]string{
				"2025-01-07T00:00": {"newest", "weekly 2025-W02"},
				"2025-01-02T00:00": {"weekly 2025-W01"},
				"2024-12-29T00:00": {"weekly 2024-W52"},
			},
		},
		{
			name: "monthly 3",
			in: snaps("2024-10-01T00:00", "2024-11-15T00:00", "2024-11-30T00:00", "2024-12-01T00:00",
				"2024-12-31T23:59", "2025-01-05T00:00"),
			p:    Policy{Monthly: 3},
			keep: []string{"2025-01-05T00:00", "2024-12-31T23:59", "2024-11-30T00:00"},
			reasons: map[string][]string{
				"2024-12-31T23:59": {"monthly 2024-12"},
			},
		},
		{
			name: "monthly 5 with 4 months",
			in: snaps("2024-10-01T00:00", "2024-11-15T00:00", "2024-11-30T00:00", "2024-12-01T00:00",
				"2024-12-31T23:59", "2025-01-05T00:00"),
			p:    Policy{Monthly: 5},
			keep: []string{"2025-01-05T00:00", "2024-12-31T23:59", "2024-11-30T00:00", "2024-10-01T00:00"},
		},
		{
			name: "yearly 2",
			in:   snaps("2022-03-01T00:00", "2023-12-31T00:00", "2024-06-01T00:00", "2024-12-31T00:00", "2025-01-02T00:00"),
			p:    Policy{Yearly: 2},
			keep: []string{"2025-01-02T00:00", "2024-12-31T00:00"},
		},
		{
			name: "yearly 10 with 4 years",
			in:   snaps("2022-03-01T00:00", "2023-12-31T00:00", "2024-06-01T00:00", "2024-12-31T00:00", "2025-01-02T00:00"),
			p:    Policy{Yearly: 10},
			keep: []string{"2025-01-02T00:00", "2024-12-31T00:00", "2023-12-31T00:00", "2022-03-01T00:00"},
			reasons: map[string][]string{
				"2022-03-01T00:00": {"yearly 2022"},
			},
		},

		// GFS combined, and with KEEP / MAX_AGE.
		{
			name: "season: last 3, 7 daily, 4 weekly, 3 monthly, 2 yearly",
			in:   snaps(season...),
			p:    Policy{Keep: 3, Daily: 7, Weekly: 4, Monthly: 3, Yearly: 2},
			// daily: 01-10…01-04; weekly: 01-10 (W02), 01-05 (W01), 12-29 (W52), 12-22 (W51);
			// monthly: 01-10, 12-31, 11-30; yearly: 01-10, 12-31.
			keep: []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00",
				"2025-01-06T03:00", "2025-01-05T03:00", "2025-01-04T03:00", "2024-12-31T03:00",
				"2024-12-29T03:00", "2024-12-22T03:00", "2024-11-30T03:00"},
			reasons: map[string][]string{
				"2025-01-10T03:00": {"newest", "last 3", "daily 2025-01-10", "weekly 2025-W02", "monthly 2025-01", "yearly 2025"},
				"2025-01-05T03:00": {"daily 2025-01-05", "weekly 2025-W01"},
				"2025-01-04T03:00": {"daily 2025-01-04"},
				"2024-12-31T03:00": {"monthly 2024-12", "yearly 2024"},
				"2024-12-22T03:00": {"weekly 2024-W51"},
				"2024-11-30T03:00": {"monthly 2024-11"},
			},
		},
		{
			name: "season: yearly 3 keeps the oldest too",
			in:   snaps(season...),
			p:    Policy{Keep: 1, Yearly: 3},
			keep: []string{"2025-01-10T03:00", "2024-12-31T03:00", "2024-10-01T03:00"},
			reasons: map[string][]string{
				"2024-10-01T03:00": {"yearly 2024 (oldest)"},
			},
		},
		{
			name: "season: union of KEEP and weekly",
			in:   snaps(season...),
			p:    Policy{Keep: 5, Weekly: 2},
			keep: []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00",
				"2025-01-06T03:00", "2025-01-05T03:00"},
			reasons: map[string][]string{
				"2025-01-10T03:00": {"newest", "last 5", "weekly 2025-W02"},
				"2025-01-06T03:00": {"last 5"},
				"2025-01-05T03:00": {"weekly 2025-W01"},
			},
		},
		{
			name: "season: union of KEEP, MAX_AGE and monthly",
			in:   snaps(season...),
			// within 10d of now: 01-01 … 01-10 (12-31T03:00 is 10d9h old).
			p:    Policy{Keep: 3, MaxAge: 10 * day, Monthly: 2},
			keep: append(newestFirst(days("2025-01-01", "2025-01-10", 3)), "2024-12-31T03:00"),
			reasons: map[string][]string{
				"2025-01-01T03:00": {"within 10d"},
				"2024-12-31T03:00": {"monthly 2024-12"},
			},
		},
		{
			name: "buckets are UTC whatever the location",
			in: []Snapshot{
				// 2025-01-10 01:00 at +02:00 is 2025-01-09 23:00 UTC: day 01-09.
				{Name: "app-2025-01-09T23:00", Time: time.Date(2025, 1, 10, 1, 0, 0, 0, time.FixedZone("EET", 2*3600))},
				{Name: "app-2025-01-09T20:00", Time: mustTime("2025-01-09T20:00")},
				{Name: "app-2025-01-08T20:00", Time: mustTime("2025-01-08T20:00")},
			},
			p:    Policy{Daily: 2},
			keep: []string{"2025-01-09T23:00", "2025-01-08T20:00"},
			reasons: map[string][]string{
				"2025-01-09T23:00": {"newest", "daily 2025-01-09"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			d := Decide(tt.in, tt.p, now)
			if !slices.Equal(in, tt.in) {
				t.Errorf("Decide modified its input")
			}
			checkInvariants(t, tt.in, d)
			want := names(tt.keep...)
			if got := nameList(d.Keep); !slices.Equal(got, want) {
				t.Errorf("keep\n got %v\nwant %v", got, want)
			}
			for ts, want := range tt.reasons {
				if got := d.Reasons["app-"+ts]; !slices.Equal(got, want) {
					t.Errorf("reasons of %s: got %q, want %q", ts, got, want)
				}
			}
		})
	}
}

// TestDecide_SixTwo checks, on random inputs without GFS rules, that Decide is
// exactly the rule of section 6.2: fewer than KEEP → all; otherwise the newest
// KEEP plus, beyond them, those not older than MAX_AGE (unset: none).
func TestDecide_SixTwo(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		n := r.IntN(30)
		var in []Snapshot
		for j := range n {
			at := now.Add(-time.Duration(r.IntN(60*24)) * time.Minute * 30)
			in = append(in, Snapshot{Name: fmt.Sprintf("s%02d", j), Time: at})
		}
		p := Policy{Keep: r.IntN(10), MaxAge: time.Duration(r.IntN(4)) * 7 * day}
		if p.Keep == 0 && p.MaxAge == 0 {
			p.Keep = 1
		}
		t.Run(fmt.Sprintf("case%03d", i), func(t *testing.T) {
			d := Decide(in, p, now)
			checkInvariants(t, in, d)
			sorted := normalize(in)
			var want []string
			for k, s := range sorted {
				switch {
				case len(sorted) < p.Keep, k < p.Keep, k == 0:
					want = append(want, s.Name)
				case p.MaxAge > 0 && !s.Time.Before(now.Add(-p.MaxAge)):
					want = append(want, s.Name)
				}
			}
			if got := nameList(d.Keep); !slices.Equal(got, want) {
				t.Errorf("policy %v: keep %v, want %v", p, got, want)
			}
		})
	}
}

// TestDecide_GFSNewestPerBucket checks on random inputs that each GFS rule
// alone keeps the newest snapshot of min(N, buckets) newest buckets, plus the
// oldest snapshot when buckets are left over.
func TestDecide_GFSNewestPerBucket(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 300 {
		var in []Snapshot
		for j := range 1 + r.IntN(40) {
			at := now.Add(-time.Duration(r.Int64N(int64(3 * 365 * day))))
			in = append(in, Snapshot{Name: fmt.Sprintf("s%02d", j), Time: at})
		}
		n := 1 + r.IntN(8)
		rule := Policy{}.rules()[r.IntN(5)]
		p := Policy{}
		switch rule.label {
		case "hourly":
			p.Hourly = n
		case "daily":
			p.Daily = n
		case "weekly":
			p.Weekly = n
		case "monthly":
			p.Monthly = n
		case "yearly":
			p.Yearly = n
		}
		t.Run(fmt.Sprintf("case%03d_%s_%d", i, rule.label, n), func(t *testing.T) {
			d := Decide(in, p, now)
			checkInvariants(t, in, d)
			sorted := normalize(in)
			seen := map[string]bool{}
			var want []string
			for _, s := range sorted {
				b := rule.bucket(s.Time.UTC())
				if !seen[b] && len(seen) < n {
					seen[b] = true
					want = append(want, s.Name)
				}
			}
			oldest := sorted[len(sorted)-1].Name
			if len(seen) < n && !slices.Contains(want, oldest) {
				want = append(want, oldest)
			}
			if got := nameList(d.Keep); !slices.Equal(got, want) {
				t.Errorf("keep %v, want %v", got, want)
			}
		})
	}
}

func TestPolicy_Validate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		vars []string // variables named by the error; nil = valid
	}{
		{"default", Policy{Keep: 7}, nil},
		{"keep 1", Policy{Keep: 1}, nil},
		{"keep 0 with max age", Policy{MaxAge: day}, nil},
		{"keep 0 with daily", Policy{Daily: 7}, nil},
		{"keep 0 alone", Policy{}, []string{"SNAPVISOR_KEEP"}},
		{"negative keep", Policy{Keep: -1}, []string{"SNAPVISOR_KEEP"}},
		{"negative max age", Policy{Keep: 1, MaxAge: -time.Hour}, []string{"SNAPVISOR_MAX_AGE"}},
		{"rotate before", Policy{Keep: 1, RotateBefore: RotateBeforeNever}, nil},
		{"rotate before garbage", Policy{Keep: 1, RotateBefore: "sometimes"}, []string{"SNAPVISOR_ROTATE_BEFORE"}},
		{"negative gfs", Policy{Keep: 1, Hourly: -1, Daily: -2, Weekly: -3, Monthly: -4, Yearly: -5},
			[]string{"SNAPVISOR_KEEP_HOURLY", "SNAPVISOR_KEEP_DAILY", "SNAPVISOR_KEEP_WEEKLY", "SNAPVISOR_KEEP_MONTHLY", "SNAPVISOR_KEEP_YEARLY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.vars == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want one naming %v", tt.vars)
			}
			if got := errVars(err); !slices.Equal(got, tt.vars) {
				t.Errorf("error names %v, want %v (%v)", got, tt.vars, err)
			}
		})
	}
}

// errVars lists the Var of every *config.Error in err, in order.
func errVars(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if ce, ok := err.(*config.Error); ok {
			out = append(out, ce.Var)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

func TestPolicy_String(t *testing.T) {
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{Keep: 7}, "last 7"},
		{Policy{Keep: 3, MaxAge: 30 * day, Daily: 7, Weekly: 4, Monthly: 12, Yearly: 2, Hourly: 24},
			"last 3, within 30d, 24 hourly, 7 daily, 4 weekly, 12 monthly, 2 yearly"},
		{Policy{}, "newest only"},
		{Policy{Keep: 2, AllowShrink: true}, "last 2, shrink allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPolicy_GFS(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		if (Policy{Keep: 7, MaxAge: day}).GFS() {
			t.Error("GFS() = true without GFS rules")
		}
	})
	t.Run("any", func(t *testing.T) {
		for _, p := range []Policy{{Hourly: 1}, {Daily: 1}, {Weekly: 1}, {Monthly: 1}, {Yearly: 1}} {
			if !p.GFS() {
				t.Errorf("%v: GFS() = false", p)
			}
		}
	})
}

// snap builds the snapshot "app-<ts>" of size bytes in gzip+none, with opts applied.
func snap(ts string, size int64, opts ...func(*Snapshot)) Snapshot {
	s := Snapshot{Name: "app-" + ts, Time: mustTime(ts), Size: size, Format: ArchiveFormat("gzip", "none")}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func empty(s *Snapshot)    { s.Empty = true }
func onDemand(s *Snapshot) { s.OnDemand = true }

func format(compression, encryption string) func(*Snapshot) {
	return func(s *Snapshot) { s.Format = ArchiveFormat(compression, encryption) }
}

// series builds one snapshot a day at 03:00 from first to last (inclusive), each of size bytes.
func series(first, last string, size int64, opts ...func(*Snapshot)) []Snapshot {
	var out []Snapshot
	for _, ts := range days(first, last, 3) {
		out = append(out, snap(ts, size, opts...))
	}
	return out
}

const mb = 1 << 20

func TestDecide_ShrinkGuard(t *testing.T) {
	good := series("2025-01-01", "2025-01-05", mb) // five good dailies
	tests := []struct {
		name    string
		in      []Snapshot
		p       Policy
		keep    []string // timestamps, newest first
		suspect []string // timestamps, newest first
		refs    []string // the Ref of each suspect
		held    []string
	}{
		{
			name:    "empty source after good ones: the good ones are decided as if the empty ones did not exist",
			in:      slices.Concat(good, series("2025-01-06", "2025-01-09", 120, empty)),
			p:       Policy{Keep: 2},
			keep:    []string{"2025-01-09T03:00", "2025-01-08T03:00", "2025-01-05T03:00", "2025-01-04T03:00"},
			suspect: []string{"2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00", "2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00"},
			held:    []string{"2025-01-05T03:00", "2025-01-04T03:00"},
		},
		{
			name:    "one empty snapshot: the older good one it would push out is held",
			in:      slices.Concat(good, series("2025-01-06", "2025-01-06", 120, empty)),
			p:       Policy{Keep: 2},
			keep:    []string{"2025-01-06T03:00", "2025-01-05T03:00", "2025-01-04T03:00"},
			suspect: []string{"2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00"},
			held:    []string{"2025-01-04T03:00"},
		},
		{
			name:    "ALLOW_SHRINK: plain policy, suspects still reported",
			in:      slices.Concat(good, series("2025-01-06", "2025-01-09", 120, empty)),
			p:       Policy{Keep: 2, AllowShrink: true},
			keep:    []string{"2025-01-09T03:00", "2025-01-08T03:00"},
			suspect: []string{"2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00", "2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00"},
		},
		{
			name: "ALLOW_SHRINK after the big ones are gone: nothing suspect",
			in:   series("2025-01-08", "2025-01-09", 120, empty),
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-09T03:00", "2025-01-08T03:00"},
		},
		{
			name:    "shrunk below 10%",
			in:      append(slices.Clone(good), snap("2025-01-06T03:00", mb/10-1)),
			p:       Policy{Keep: 2},
			keep:    []string{"2025-01-06T03:00", "2025-01-05T03:00", "2025-01-04T03:00"},
			suspect: []string{"2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00"},
			held:    []string{"2025-01-04T03:00"},
		},
		{
			name: "exactly 10% is not suspect",
			in:   []Snapshot{snap("2025-01-05T03:00", 1000), snap("2025-01-06T03:00", 100), snap("2025-01-07T03:00", 100)},
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-07T03:00", "2025-01-06T03:00"},
		},
		{
			name: "gradual shrink is not suspect",
			in: []Snapshot{snap("2025-01-01T03:00", mb), snap("2025-01-02T03:00", mb/2), snap("2025-01-03T03:00", mb/4),
				snap("2025-01-04T03:00", mb/8), snap("2025-01-05T03:00", mb/16), snap("2025-01-06T03:00", mb/32)},
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-06T03:00", "2025-01-05T03:00"},
		},
		{
			name: "compression change: sizes of different formats are not compared",
			in:   append(slices.Clone(good), snap("2025-01-06T03:00", mb/50, format("zstd", "none")), snap("2025-01-07T03:00", mb/60, format("zstd", "none"))),
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-07T03:00", "2025-01-06T03:00"},
		},
		{
			name: "compression change, then a shrink within the new format",
			in: append(slices.Clone(good), snap("2025-01-06T03:00", mb/2, format("zstd", "none")),
				snap("2025-01-07T03:00", 1000, format("zstd", "none"))),
			p:       Policy{Keep: 2},
			keep:    []string{"2025-01-07T03:00", "2025-01-06T03:00", "2025-01-05T03:00"},
			suspect: []string{"2025-01-07T03:00"},
			refs:    []string{"2025-01-06T03:00"},
			held:    []string{"2025-01-05T03:00"},
		},
		{
			name: "encryption change is a format change",
			in:   append(slices.Clone(good), snap("2025-01-06T03:00", 1000, format("gzip", "aes256-gcm")), snap("2025-01-07T03:00", 1000, format("gzip", "aes256-gcm"))),
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-07T03:00", "2025-01-06T03:00"},
		},
		{
			name:    "an empty snapshot is suspect in another format too",
			in:      append(slices.Clone(good), snap("2025-01-06T03:00", 90, format("zstd", "none"), empty)),
			p:       Policy{Keep: 1},
			keep:    []string{"2025-01-06T03:00", "2025-01-05T03:00"},
			suspect: []string{"2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00"},
			held:    []string{"2025-01-05T03:00"},
		},
		{
			name: "a fresh install of an empty source: nothing to compare with",
			in:   series("2025-01-01", "2025-01-05", 120, empty),
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-05T03:00", "2025-01-04T03:00"},
		},
		{
			name: "empty after a restart: an older snapshot of unknown content, hardly larger, was empty too",
			in:   append(series("2025-01-01", "2025-01-04", 127), series("2025-01-05", "2025-01-06", 120, empty)...),
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-06T03:00", "2025-01-05T03:00"},
		},
		{
			name:    "empty after an older snapshot of unknown content that is larger",
			in:      []Snapshot{snap("2025-01-04T03:00", 300), snap("2025-01-05T03:00", 128), snap("2025-01-06T03:00", 120, empty)},
			p:       Policy{Keep: 1},
			keep:    []string{"2025-01-06T03:00", "2025-01-05T03:00"},
			suspect: []string{"2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00"},
			held:    []string{"2025-01-05T03:00"},
		},
		{
			name: "unknown size is never suspect, and not a reference",
			in: []Snapshot{snap("2025-01-04T03:00", mb), snap("2025-01-05T03:00", 0),
				snap("2025-01-06T03:00", 500)},
			p:       Policy{Keep: 1},
			keep:    []string{"2025-01-06T03:00", "2025-01-05T03:00"},
			suspect: []string{"2025-01-06T03:00"},
			refs:    []string{"2025-01-04T03:00"},
			held:    []string{"2025-01-05T03:00"},
		},
		{
			name: "data back after an empty spell: the new snapshots are good again",
			in: slices.Concat(series("2025-01-01", "2025-01-03", mb), series("2025-01-04", "2025-01-05", 120, empty),
				series("2025-01-06", "2025-01-06", mb)),
			p:       Policy{Keep: 2},
			keep:    []string{"2025-01-06T03:00", "2025-01-05T03:00", "2025-01-03T03:00"},
			suspect: []string{"2025-01-05T03:00", "2025-01-04T03:00"},
			refs:    []string{"2025-01-03T03:00", "2025-01-03T03:00"},
			held:    []string{"2025-01-03T03:00"},
		},
		{
			name: "GFS: good buckets decided without the suspects",
			in:   slices.Concat(good, series("2025-01-06", "2025-01-10", 120, empty)),
			p:    Policy{Keep: 1, Daily: 3},
			keep: []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-08T03:00",
				"2025-01-05T03:00", "2025-01-04T03:00", "2025-01-03T03:00"},
			suspect: []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00", "2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00"},
			held:    []string{"2025-01-05T03:00", "2025-01-04T03:00", "2025-01-03T03:00"},
		},
		{
			name: "MAX_AGE: good ones decided without the suspects",
			in:   slices.Concat(good, series("2025-01-06", "2025-01-10", 120, empty)),
			p:    Policy{Keep: 1, MaxAge: 2 * day},
			// within 2d of now (01-10T12:00): 01-09 and 01-10 only.
			keep:    []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-05T03:00"},
			suspect: []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00", "2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00", "2025-01-05T03:00"},
			held:    []string{"2025-01-05T03:00"},
		},
		{
			name: "invalid policy deletes nothing",
			in:   slices.Concat(good, series("2025-01-06", "2025-01-07", 120, empty)),
			p:    Policy{},
			keep: []string{"2025-01-07T03:00", "2025-01-06T03:00", "2025-01-05T03:00", "2025-01-04T03:00",
				"2025-01-03T03:00", "2025-01-02T03:00", "2025-01-01T03:00"},
			suspect: []string{"2025-01-07T03:00", "2025-01-06T03:00"},
			refs:    []string{"2025-01-05T03:00", "2025-01-05T03:00"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in, tt.p, now)
			checkInvariants(t, tt.in, d)
			if got, want := nameList(d.Keep), names(tt.keep...); !slices.Equal(got, want) {
				t.Errorf("keep\n got %v\nwant %v", got, want)
			}
			var sus, refs []string
			for _, s := range d.Suspect {
				sus, refs = append(sus, s.Name), append(refs, s.Ref.Name)
			}
			if want := names(tt.suspect...); !slices.Equal(sus, want) {
				t.Errorf("suspect\n got %v\nwant %v", sus, want)
			}
			if want := names(tt.refs...); !slices.Equal(refs, want) {
				t.Errorf("refs\n got %v\nwant %v", refs, want)
			}
			if got, want := nameList(d.Held), names(tt.held...); !slices.Equal(got, want) {
				t.Errorf("held\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestDecide_ShrinkGuardRandom checks on random histories that the guard
// never deletes a good snapshot that the policy keeps among the good ones
// alone, and keeps at most Keep suspect ones of each kind, scheduled and on
// demand (KEEP only).
func TestDecide_ShrinkGuardRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 300 {
		var in []Snapshot
		for j := range 1 + r.IntN(30) {
			s := Snapshot{Name: fmt.Sprintf("s%02d", j), Time: now.Add(-time.Duration(r.IntN(2000)) * time.Hour),
				Size: int64(r.IntN(4)) * int64(1+r.IntN(1000)), Format: []string{"gzip+none", "zstd+none"}[r.IntN(2)]}
			switch r.IntN(6) {
			case 0:
				s.Empty = true
			case 1:
				s.Size /= 50
			}
			s.OnDemand = r.IntN(5) == 0
			in = append(in, s)
		}
		p := Policy{Keep: 1 + r.IntN(5)}
		t.Run(fmt.Sprintf("case%03d", i), func(t *testing.T) {
			d := Decide(in, p, now)
			checkInvariants(t, in, d)
			suspect := map[string]bool{}
			for _, s := range d.Suspect {
				suspect[s.Name] = true
			}
			var good []Snapshot
			for _, s := range in {
				if !suspect[s.Name] {
					good = append(good, s)
				}
			}
			kept := map[string]bool{}
			for _, s := range d.Keep {
				kept[s.Name] = true
			}
			for _, s := range Decide(good, p, now).Keep {
				if !kept[s.Name] {
					t.Errorf("good snapshot %s deleted", s.Name)
				}
			}
			n := map[bool]int{}
			for _, s := range d.Keep {
				if suspect[s.Name] {
					n[s.OnDemand]++
				}
			}
			if n[false] > p.Keep || n[true] > p.Keep {
				t.Errorf("%d scheduled and %d on-demand suspect snapshots kept, KEEP=%d", n[false], n[true], p.Keep)
			}
		})
	}
}

func TestDecide_OnDemand(t *testing.T) {
	week := series("2025-01-03", "2025-01-09", mb) // seven scheduled dailies
	var storm []Snapshot                           // eight requests within minutes
	for m := range 8 {
		storm = append(storm, snap(fmt.Sprintf("2025-01-10T10:%02d", m), mb, onDemand))
	}
	tests := []struct {
		name string
		in   []Snapshot
		p    Policy
		keep []string
	}{
		{
			name: "a storm of requests deletes no scheduled snapshot",
			in:   slices.Concat(week, storm),
			p:    Policy{Keep: 7},
			keep: append([]string{"2025-01-10T10:07", "2025-01-10T10:06", "2025-01-10T10:05", "2025-01-10T10:04",
				"2025-01-10T10:03", "2025-01-10T10:02", "2025-01-10T10:01"}, newestFirst(days("2025-01-03", "2025-01-09", 3))...),
		},
		{
			name: "scheduled snapshots after the storm push the on-demand ones out",
			in:   slices.Concat(week[2:], storm[:3], series("2025-01-11", "2025-01-12", mb)),
			p:    Policy{Keep: 3},
			keep: []string{"2025-01-12T03:00", "2025-01-11T03:00", "2025-01-10T10:02", "2025-01-09T03:00"},
		},
		{
			name: "the newest is kept when it is on demand, whatever KEEP",
			in:   append(slices.Clone(week), snap("2025-01-10T10:00", mb, onDemand)),
			p:    Policy{Keep: 1},
			keep: []string{"2025-01-10T10:00", "2025-01-09T03:00"},
		},
		{
			name: "an on-demand snapshot among the newest KEEP of all is kept besides KEEP scheduled ones",
			in:   append(slices.Clone(week), snap("2025-01-07T12:00", mb, onDemand)),
			p:    Policy{Keep: 3},
			keep: []string{"2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T12:00", "2025-01-07T03:00"},
		},
		{
			name: "an on-demand snapshot beyond the newest KEEP of all is deleted",
			in:   append(slices.Clone(week), snap("2025-01-06T12:00", mb, onDemand)),
			p:    Policy{Keep: 3},
			keep: []string{"2025-01-09T03:00", "2025-01-08T03:00", "2025-01-07T03:00"},
		},
		{
			name: "GFS buckets treat both alike",
			in:   []Snapshot{snap("2025-01-09T00:00", mb), snap("2025-01-09T18:00", mb, onDemand), snap("2025-01-10T00:00", mb)},
			p:    Policy{Daily: 2},
			keep: []string{"2025-01-10T00:00", "2025-01-09T18:00"},
		},
		{
			name: "MAX_AGE treats both alike",
			in:   slices.Concat(week, storm),
			p:    Policy{Keep: 1, MaxAge: day},
			keep: append(newestFirst([]string{"2025-01-10T10:00", "2025-01-10T10:01", "2025-01-10T10:02", "2025-01-10T10:03",
				"2025-01-10T10:04", "2025-01-10T10:05", "2025-01-10T10:06", "2025-01-10T10:07"}), "2025-01-09T03:00"),
		},
		{
			name: "an empty on-demand snapshot pushes nothing out",
			in:   slices.Concat(week, series("2025-01-10", "2025-01-10", 100, onDemand, empty)),
			p:    Policy{Keep: 2},
			keep: []string{"2025-01-10T03:00", "2025-01-09T03:00", "2025-01-08T03:00"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.in, tt.p, now)
			checkInvariants(t, tt.in, d)
			if got, want := nameList(d.Keep), names(tt.keep...); !slices.Equal(got, want) {
				t.Errorf("keep\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestPolicy_MakeRoom(t *testing.T) {
	for _, tt := range []struct{ in, want Policy }{
		{Policy{Keep: 7}, Policy{Keep: 6}},
		{Policy{Keep: 2, Daily: 3, MaxAge: day}, Policy{Keep: 1, Daily: 3, MaxAge: day}},
		{Policy{Keep: 1}, Policy{Keep: 1}},
		{Policy{Daily: 7}, Policy{Daily: 7}},
	} {
		t.Run(tt.in.String(), func(t *testing.T) {
			if got := tt.in.MakeRoom(); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
