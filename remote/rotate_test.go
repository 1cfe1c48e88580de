package remote

import (
	"slices"
	"testing"
	"time"

	"snapvisor/store"
	"snapvisor/store/storetest"

	"snapvisor/rotation"
)

// TestRotate_ShrinkGuard: on a store, as locally, snapshots of an empty or
// shrunk source never push good ones out, unless the policy allows shrinking;
// sizes come from the listing and emptiness from the caller's mark.
func TestRotate_ShrinkGuard(t *testing.T) {
	t0 := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	key := func(h int) string {
		return "app-" + t0.Add(time.Duration(h)*time.Hour).Format("20060102T150405Z") + ".tar.gz"
	}
	// setup pushes good snapshots of 100 kB at hours 1-3 and snapshots of
	// small bytes at hours 4-6 to a fresh file:// store.
	setup := func(t *testing.T, small int64) store.Store {
		ctx := storetest.Ctx(t, time.Minute)
		s := storetest.Open(t, "file://"+t.TempDir(), store.Config{})
		local := t.TempDir()
		for h := 1; h <= 6; h++ {
			n := int64(100_000)
			if h >= 4 {
				n = small
			}
			if _, err := Push(ctx, s, storetest.MakeSnapshot(t, local, "app", t0.Add(time.Duration(h)*time.Hour), ".tar.gz", n)); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	remaining := func(t *testing.T, s store.Store) []string {
		t.Helper()
		list, err := ListSnapshots(storetest.Ctx(t, time.Minute), s, "app")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range list {
			out = append(out, r.Key)
		}
		return out
	}
	markEmpty := func(s *rotation.Snapshot) {
		if s.Time.After(t0.Add(3 * time.Hour)) {
			s.Empty = true
		}
	}
	tests := []struct {
		name    string
		small   int64
		p       rotation.Policy
		mark    func(*rotation.Snapshot)
		keep    []int // hours, newest first
		suspect []int
	}{
		{"shrunk: good ones held", 500, rotation.Policy{Keep: 2}, nil, []int{6, 5, 3, 2}, []int{6, 5, 4}},
		{"empty by the caller's mark: good ones held", 90_000, rotation.Policy{Keep: 2}, markEmpty, []int{6, 5, 3, 2}, []int{6, 5, 4}},
		{"not marked, not shrunk: plain policy", 90_000, rotation.Policy{Keep: 2}, nil, []int{6, 5}, nil},
		{"ALLOW_SHRINK: plain policy", 500, rotation.Policy{Keep: 2, AllowShrink: true}, nil, []int{6, 5}, []int{6, 5, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := setup(t, tt.small)
			d, deleted, err := Rotate(storetest.Ctx(t, time.Minute), s, "app", tt.p, t0.Add(7*time.Hour), tt.mark)
			if err != nil {
				t.Fatal(err)
			}
			var want, sus, wantSus []string
			for _, h := range tt.keep {
				want = append(want, key(h))
			}
			for _, h := range tt.suspect {
				wantSus = append(wantSus, key(h))
			}
			for _, x := range d.Suspect {
				sus = append(sus, x.Name)
			}
			if got := remaining(t, s); !slices.Equal(got, want) {
				t.Errorf("remaining %v, want %v (deleted %v)", got, want, deleted)
			}
			if !slices.Equal(sus, wantSus) {
				t.Errorf("suspect %v, want %v", sus, wantSus)
			}
		})
	}
}
