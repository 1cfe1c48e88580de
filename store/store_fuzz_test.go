package store

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/internal/fuzzseed"
)

// remoteSeeds are URLs of every scheme, with and without credentials, the
// bad values of the hostile test, and inputs that url.Parse rejects.
var remoteSeeds = []string{
	"file:///mnt/nfs/backups", "file://localhost/srv/b", "file://host/x", "file:///", "file://u:pw-Xy7Qz@localhost/srv",
	"s3://bucket/prefix?endpoint=127.0.0.1:9000&tls=false&region=us-east-1", "s3://b/p?tls=maybe",
	"s3://b/p?endpoint=h&secret_key=abc123&x-amz-signature=q9q9q9", "s3://AKIA:secret-Xy7Qz@bucket/p",
	"s3://b/p?endpoint=http://user:pw-Xy7Qz@h:9000", "s3://b/p?%73ig=sig-Xy7Qz;x", "s3://b/p?Sig=a&SIG=b",
	"sftp://u@h:2222/srv/backups", "sftp://backup:hunter22@host:22/path", "sftp://h", "sftp://u@h:0/p", "sftp://u@h:99999/p",
	"sftp:user:pw-Xy7Qz@host/path", "sftp:/path", "sftp://[::1]:22/p", "sftp://u@[fe80::1%25eth0]/p",
	"azure://container/prefix", "azure://c/p?sig=abcdef",
	"azure://c/p?endpoint=https://acct.blob.core.windows.net/?sv=2022&sig=SAS-Xy7Qz%3D",
	"azure://c/p?endpoint=https%3A%2F%2Facct.blob.core.windows.net%2F%3Fsv%3D2022%26sig%3DSAS-Xy7Qz",
	"azure://c/p?endpoint=" + url.QueryEscape("https://a/?x="+url.QueryEscape("https://b/?y="+url.QueryEscape("https://c/?sig=deep-Xy7Qz"))),
	"gs://bucket/prefix", "gs://bucket", "gs://", "gs:///p", "GS://bucket/p",
	"::not a url//user:pw-Xy7Qz@host", "%zz://u:pw-Xy7Qz@h/p?token=tok-Xy7Qz", "http://h/p", "/just/a/path", "",
	" s3://b/p ", "s3://b/p#token=frag", "s3://b/p?x=1&&y", "s3://b/p?x=%zz&key=k-Xy7Qz",
}

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
	var remotes, sums, listings []fuzzseed.Seed
	for _, s := range remoteSeeds {
		remotes = append(remotes, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}})
	}
	for _, s := range sumSeeds {
		sums = append(sums, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{[]byte(s)}})
	}
	for _, s := range listingSeeds {
		for _, name := range []string{"snap", ""} {
			listings = append(listings, fuzzseed.Seed{Name: fuzzseed.Name(name + "|" + s), Args: []any{name, s}})
		}
	}
	fuzzseed.Sync(t, "FuzzRedact", remotes)
	fuzzseed.Sync(t, "FuzzParseSumFile", sums)
	fuzzseed.Sync(t, "FuzzSnapshotsIn", listings)
}

// secret is a credential in a URL: as written (raw) and as meant (decoded).
type secret struct{ raw, decoded string }

// secretsOf finds the credentials in a remote URL as a reader would, without
// Redact's code: the password of the user info (also in an opaque
// "scheme:user:pw@host" and in input url.Parse rejects), and the values of
// query parameters whose name looks like a credential (secretParam, the
// package's one definition of that), in nested URLs too (three levels).
func secretsOf(s string, depth int) []secret {
	var out []secret
	s = strings.TrimSpace(s)
	rest := s
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	} else if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[i+1:] // opaque: scheme:user:pw@host
	}
	auth := rest
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		if _, pw, ok := strings.Cut(auth[:i], ":"); ok {
			out = append(out, secret{pw, unescape(pw)})
		}
	}
	if _, query, ok := strings.Cut(s, "?"); ok {
		query, _, _ = strings.Cut(query, "#")
		for _, kv := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
			k, v, _ := strings.Cut(kv, "=")
			if secretParam.MatchString(k) || secretParam.MatchString(unescape(k)) {
				out = append(out, secret{v, unescape(v)})
			} else if depth < 3 && strings.Contains(unescape(v), "://") {
				out = append(out, secretsOf(unescape(v), depth+1)...)
			}
		}
	}
	return out
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// leaked reports whether out shows sec although in shows it only where it is a secret.
func leaked(out, in string, sec secret) (string, bool) {
	for _, form := range []string{sec.raw, sec.decoded, url.QueryEscape(sec.decoded), url.PathEscape(sec.decoded)} {
		// Short values and values that appear elsewhere in the input (the
		// password "b" of "s3://b:b@b") cannot be told apart from the rest.
		if len(form) < 4 || strings.Count(in, form) > 1 || strings.Count(strings.Replace(in, sec.raw, "", 1), form) > 0 {
			continue
		}
		if strings.Contains(out, form) {
			return form, true
		}
	}
	return "", false
}

// FuzzRedact: Redact never panics and never shows the password or a secret
// parameter of its input; parseRemote never accepts a URL holding one, and
// its error (which quotes the URL) never shows one either.
func FuzzRedact(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1024 {
			return
		}
		out := Redact(in)
		secrets := secretsOf(in, 0)
		for _, sec := range secrets {
			if form, bad := leaked(out, in, sec); bad {
				t.Fatalf("Redact(%q) = %q shows the secret %q", in, out, form)
			}
		}
		u, err := parseRemote(in)
		if err != nil {
			for _, sec := range secrets {
				if form, bad := leaked(err.Error(), in, sec); bad {
					// The error's own words ("not a URL") are not the secret:
					// it is shown only if the error without it lacks it.
					if _, alt := parseRemote(strings.Replace(in, sec.raw, "\x01", 1)); alt != nil && strings.Contains(alt.Error(), form) {
						continue
					}
					t.Fatalf("parseRemote(%q) error %q shows the secret %q", in, err, form)
				}
			}
			return
		}
		if !slices.Contains([]string{"file", "s3", "sftp", "azure", "gs"}, u.Scheme) {
			t.Fatalf("parseRemote(%q) accepted scheme %q", in, u.Scheme)
		}
		for _, sec := range secrets {
			if sec.decoded != "" {
				t.Fatalf("parseRemote(%q) accepted a URL holding the credential %q", in, sec.decoded)
			}
		}
	})
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
		var objs []Object
		seen := map[string]bool{}
		for _, line := range strings.Split(listing, "\n") {
			key, size, _ := strings.Cut(line, " ")
			if key == "" || seen[key] { // a store lists each key once
				continue
			}
			seen[key] = true
			var n int64
			fmt.Sscan(size, &n)
			objs = append(objs, Object{Key: key, Size: n, Modified: time.Unix(int64(len(objs)), 0)})
		}
		slices.SortFunc(objs, func(a, b Object) int { return strings.Compare(a.Key, b.Key) })
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
