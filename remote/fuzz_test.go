package remote

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/store"

	"snapvisor/internal/fuzzseed"
)

// sumSeeds are .sha256 file contents (named for archive "snap-20240101T000000Z.tar.gz").
var sumSeeds = []string{
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  snap-20240101T000000Z.tar.gz\n",
	"0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF *snap-20240101T000000Z.tar.gz\n",
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  snap-20240101T000000Z.tar.gz",
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  snap-20240101T000000Z.tar.gz\n\n",
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  other.tar.gz\n",
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg  snap-20240101T000000Z.tar.gz\n",
	"0123456789abcdef  snap-20240101T000000Z.tar.gz\n",
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\tsnap-20240101T000000Z.tar.gz\n",
	"\n", "",
}

// listingSeeds are store listings, one object a line: "key size".
var listingSeeds = []string{
	"snap-20240101T000000Z.tar.gz 100\nsnap-20240101T000000Z.tar.gz.sha256 96\nsnap-20240102T000000Z.tar.gz 100\n",
	"snap-20240101T000000Z.tar.gz 100\nsnap-20240101T000000Z.tar.gz.sha256 0\nsnap-20240102T000000Z.tar.zst 5\nsnap-20240102T000000Z.tar.zst.sha256 96\nsnap-20231231T000000Z.tar.sha256 96\n",
	"snap-20240101T000000Z.tar.gz.aes256gcm 7\nsnap-20240101T000000Z.tar.gz.aes256gcm.sha256 96\nother-20250101T000000Z.tar 1\nother-20250101T000000Z.tar.sha256 1\nsnap-20240101T000000Z.tar.gz 3\nsnap-20240101T000000Z.tar.gz.sha256 3\n",
	"snap-20240101T000000Z.tar.gz.tmp-123 100\nsub/snap-20240101T000000Z.tar.gz 1\nsub/snap-20240101T000000Z.tar.gz.sha256 1\nsnap-2024010T000000Z.tar.gz 1\n",
	"", "\n\n",
}

func TestFuzzSeeds(t *testing.T) {
	var sums, listings []fuzzseed.Seed
	for _, s := range sumSeeds {
		sums = append(sums, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{[]byte(s)}})
	}
	for _, s := range listingSeeds {
		for _, name := range []string{"snap", ""} {
			listings = append(listings, fuzzseed.Seed{Name: fuzzseed.Name(name + "|" + s), Args: []any{name, s}})
		}
	}
	fuzzseed.Sync(t, "FuzzParseSumFile", sums)
	fuzzseed.Sync(t, "FuzzSnapshotsIn", listings)
}

// FuzzParseSumFile: parseSumFile never panics; what it accepts is 64
// lowercase hex digits and the file sumFile would write for it (up to the
// case of the digits and the binary-mode '*'); sumFile's output parses back.
func FuzzParseSumFile(f *testing.F) {
	const base = "snap-20240101T000000Z.tar.gz"
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxSumFile {
			return
		}
		digest, err := parseSumFile(b, base)
		if err != nil {
			return
		}
		if len(digest) != 64 || strings.ToLower(digest) != digest {
			t.Fatalf("parseSumFile(%q) = %q, not 64 lowercase hex digits", b, digest)
		}
		if _, err := hex.DecodeString(digest); err != nil {
			t.Fatalf("parseSumFile(%q) = %q: %v", b, digest, err)
		}
		norm := bytes.Replace(bytes.ToLower(b), []byte(" *"), []byte("  "), 1)
		if !bytes.Equal(norm, bytes.ToLower(sumFile(digest, base))) {
			t.Fatalf("parseSumFile accepted %q, which is not the line %q", b, sumFile(digest, base))
		}
		if back, err := parseSumFile(sumFile(digest, base), base); err != nil || back != digest {
			t.Fatalf("parseSumFile(sumFile(%q)) = %q, %v", digest, back, err)
		}
	})
}

// FuzzSnapshotsIn: from any listing ("key size" lines), snapshotsIn returns
// only snapshots named name whose non-empty .sha256 is listed, newest first,
// and orphansIn never returns a key of a complete snapshot (nor its
// .sha256), nor one as new as the newest complete snapshot: rotation
// deletes what orphansIn returns.
func FuzzSnapshotsIn(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, listing string) {
		if len(listing) > 8192 {
			return
		}
		var objs []store.Object
		seen := map[string]bool{}
		for _, line := range strings.Split(listing, "\n") {
			key, size, _ := strings.Cut(line, " ")
			if key == "" || seen[key] { // a store lists each key once
				continue
			}
			seen[key] = true
			var n int64
			fmt.Sscan(size, &n)
			objs = append(objs, store.Object{Key: key, Size: n, Modified: time.Unix(int64(len(objs)), 0)})
		}
		slices.SortFunc(objs, func(a, b store.Object) int { return strings.Compare(a.Key, b.Key) })
		sizes := map[string]int64{}
		for _, o := range objs {
			sizes[o.Key] = o.Size
		}
		snaps := snapshotsIn(objs, "fuzz://", name)
		complete := map[string]bool{}
		for i, s := range snaps {
			n, ts, comp, ok := ParseSnapshotName(s.Key)
			if !ok || n != s.Name || !ts.Equal(s.Time) || comp != s.Compression || (name != "" && n != name) {
				t.Fatalf("snapshotsIn returned %+v, which ParseSnapshotName reads as %q %v %q %v", s, n, ts, comp, ok)
			}
			if sizes[s.Key+sumSuffix] <= 0 {
				t.Fatalf("snapshotsIn returned %q without a non-empty %s", s.Key, sumSuffix)
			}
			if i > 0 && newer(s, snaps[i-1]) {
				t.Fatalf("snapshotsIn: %q listed after the older %q", s.Key, snaps[i-1].Key)
			}
			complete[s.Key] = true
		}
		for _, o := range objs {
			n, _, _, ok := ParseSnapshotName(o.Key)
			if ok && (name == "" || n == name) && sizes[o.Key+sumSuffix] > 0 && !complete[o.Key] {
				t.Fatalf("snapshotsIn left out the complete snapshot %q", o.Key)
			}
		}
		if name == "" {
			return // orphansIn is called with the configured name only
		}
		for _, k := range orphansIn(objs, snaps, name) {
			archive := strings.TrimSuffix(k, sumSuffix)
			if complete[archive] {
				t.Fatalf("orphansIn returned %q, part of the complete snapshot %q", k, archive)
			}
			if _, ok := sizes[k]; !ok {
				t.Fatalf("orphansIn returned %q, not in the listing", k)
			}
			n, ts, _, ok := ParseSnapshotName(archive)
			if !ok || n != name || !ts.Before(snaps[0].Time) {
				t.Fatalf("orphansIn returned %q: not an older snapshot named %q (newest complete %v)", k, name, snaps[0].Time)
			}
		}
	})
}
