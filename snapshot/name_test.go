package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/seal"
)

// TestParseFileName: real names of snapshots on users' disks and remotes
// parse into their parts and are written back byte for byte; everything
// else beside them (checksum files, temporaries, other spellings) is no
// snapshot.
func TestParseFileName(t *testing.T) {
	at := func(s string) time.Time {
		ts, err := time.Parse(time.RFC3339, s)
		must(t, err)
		return ts
	}
	for _, tc := range []struct {
		base string
		want Name
	}{
		{"snapshot-20240101T000000Z.tar.gz", Name{"snapshot", at("2024-01-01T00:00:00Z"), CompressionGzip, seal.None}},
		{"redis-20261125T132846Z.tar.gz", Name{"redis", at("2026-11-25T13:28:46Z"), CompressionGzip, seal.None}},
		{"redis-20250101T000000Z.tar.gz.aes256gcm", Name{"redis", at("2025-01-01T00:00:00Z"), CompressionGzip, seal.AESGCM}},
		{"redis-20250101T000000Z.tar.zst", Name{"redis", at("2025-01-01T00:00:00Z"), CompressionZstd, seal.None}},
		{"pg-main-20250102T030405Z.tar.zst.age", Name{"pg-main", at("2025-01-02T03:04:05Z"), CompressionZstd, seal.Age}},
		{"app.v1.2-20991231T235959Z.tar.gpg", Name{"app.v1.2", at("2099-12-31T23:59:59Z"), CompressionNone, seal.GPG}},
		{"my.db_2-20991231T235959Z.tar.gz.aes256cbc", Name{"my.db_2", at("2099-12-31T23:59:59Z"), CompressionGzip, seal.AESCBC}},
		{"data-20240229T120000Z.tar", Name{"data", at("2024-02-29T12:00:00Z"), CompressionNone, seal.None}},
		{"9-20240101T000000Z.tar.zst.aes256gcm", Name{"9", at("2024-01-01T00:00:00Z"), CompressionZstd, seal.AESGCM}},
		// A prefix that looks like a snapshot name: the time stamp is the last one.
		{"a-20240101T000000Z-20240102T000000Z.tar.gz", Name{"a-20240101T000000Z", at("2024-01-02T00:00:00Z"), CompressionGzip, seal.None}},
		{"snapshot.tar.gz-20240101T000000Z.tar.zst", Name{"snapshot.tar.gz", at("2024-01-01T00:00:00Z"), CompressionZstd, seal.None}},
		{"x.tmp-1-20240101T000000Z.tar.gz", Name{"x.tmp-1", at("2024-01-01T00:00:00Z"), CompressionGzip, seal.None}},
	} {
		t.Run(tc.base, func(t *testing.T) {
			n, ok := ParseFileName(tc.base)
			if !ok || n.Prefix != tc.want.Prefix || !n.Time.Equal(tc.want.Time) || n.Time.Location() != time.UTC ||
				n.Compression != tc.want.Compression || n.Encryption != tc.want.Encryption {
				t.Fatalf("ParseFileName = %+v, %v; want %+v", n, ok, tc.want)
			}
			if s := tc.want.String(); s != tc.base {
				t.Fatalf("String = %q, want %q", s, tc.base)
			}
		})
	}
	for _, base := range []string{
		"snapshot-20240101T000000Z.tgz",           // one spelling per compression
		"snapshot-20240101T000000Z.tar.gz.sha256", // its checksum file
		"snapshot-20240101T000000Z.tar.gz.aes256gcm.sha256",
		".snapshot-20240101T000000Z.tar.gz.tmp-123", // its temporary
		"snapshot-20240101T000000Z.tar.bz2",
		"snapshot-20240101T000000Z.tar.aes256gcm.gz", // encryption before compression
		"snapshot-20240101T000000Z.tar.gz.age.gpg",   // two encryptions
		"snapshot-20240101T000000Z.tar.gz.aes",
		"snapshot-20240101T000000Z.gz",
		"snapshot-20240101T000000Z",
		"snapshot-20240230T000000Z.tar.gz", // no such day
		"snapshot-20240101T240000Z.tar.gz",
		"snapshot-20240101T000000z.tar.gz",
		"snapshot-2024010T000000Z.tar.gz",
		"snapshot20240101T000000Z.tar.gz",
		"snapshot_20240101T000000Z.tar.gz",
		"-20240101T000000Z.tar.gz",
		"_x-20240101T000000Z.tar.gz",
		"a b-20240101T000000Z.tar.gz",
		"snapshot-٢٠٢٤0101T000000Z.tar",
		"sub/snapshot-20240101T000000Z.tar.gz",
		"",
	} {
		if n, ok := ParseFileName(base); ok {
			t.Errorf("ParseFileName(%q) = %+v, want no snapshot", base, n)
		}
	}
}

// TestName_String: the names Create writes, for every compression and
// encryption, spelled out; the time is written in UTC to the second.
func TestName_String(t *testing.T) {
	at := time.Date(2025, 1, 2, 4, 4, 5, 999e6, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		comp, enc, want string
	}{
		{CompressionGzip, seal.None, "app-20250102T030405Z.tar.gz"},
		{CompressionGzip, "", "app-20250102T030405Z.tar.gz"},
		{CompressionZstd, seal.None, "app-20250102T030405Z.tar.zst"},
		{CompressionNone, seal.None, "app-20250102T030405Z.tar"},
		{CompressionGzip, seal.AESGCM, "app-20250102T030405Z.tar.gz.aes256gcm"},
		{CompressionZstd, seal.Age, "app-20250102T030405Z.tar.zst.age"},
		{CompressionNone, seal.GPG, "app-20250102T030405Z.tar.gpg"},
		{CompressionGzip, seal.AESCBC, "app-20250102T030405Z.tar.gz.aes256cbc"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			cfg := Config{Name: "app", Compression: tc.comp, Encryption: seal.Config{Algorithm: tc.enc}}
			if got := cfg.NameAt(at).String(); got != tc.want {
				t.Fatalf("NameAt().String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestParseSum: FormatSum writes the line sha256sum writes, and ParseSum
// reads it back; both sha256sum modes and upper-case digits are read.
func TestParseSum(t *testing.T) {
	digest := strings.Repeat("0123456789abcdef", 4)
	base := "snapshot-20240101T000000Z.tar.gz"
	if got, want := string(FormatSum(digest, base)), digest+"  "+base+"\n"; got != want {
		t.Fatalf("FormatSum = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		name, content string
		ok            bool
	}{
		{"Text", digest + "  " + base + "\n", true},
		{"Binary", digest + " *" + base + "\n", true},
		{"Upper", strings.ToUpper(digest) + "  " + base + "\n", true},
		{"NoNewline", digest + "  " + base, false},
		{"TwoLines", digest + "  " + base + "\n\n", false},
		{"CRLF", digest + "  " + base + "\r\n", false},
		{"Tab", digest + "\t" + base + "\n", false},
		{"OtherName", digest + "  other.tar.gz\n", false},
		{"DotSlash", digest + "  ./" + base + "\n", false},
		{"Short", digest[:62] + "  " + base + "\n", false},
		{"NotHex", digest[:63] + "g  " + base + "\n", false},
		{"Empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSum([]byte(tc.content), base)
			if !tc.ok {
				if err == nil {
					t.Fatalf("ParseSum = %q, want an error", got)
				}
				return
			}
			if err != nil || got != digest {
				t.Fatalf("ParseSum = %q, %v; want %q", got, err, digest)
			}
		})
	}
}

// TestIsTemp: the temporaries Create writes (TempName, for archives and
// checksum files) are recognised, so that the next run deletes them; other
// hidden or temporary files in the snapshot directory are not.
func TestIsTemp(t *testing.T) {
	dir := t.TempDir()
	for _, final := range []string{"snapshot-20240101T000000Z.tar.gz", "snapshot-20240101T000000Z.tar.gz" + SumSuffix,
		"db-20250102T030405Z.tar.zst.aes256gcm", "db-20250102T030405Z.tar.age" + SumSuffix, "x.tmp-1-20240101T000000Z.tar"} {
		f, err := os.CreateTemp(dir, TempName(final))
		must(t, err)
		f.Close()
		base := filepath.Base(f.Name())
		if !strings.HasPrefix(base, "."+final+".tmp-") || !IsTemp(base) {
			t.Errorf("temporary %q of %q: IsTemp = %v", base, final, IsTemp(base))
		}
	}
	for _, base := range []string{
		".snapshot-20240101T000000Z.tar.gz.tmp-",
		".snapshot-20240101T000000Z.tar.gz.tmp-x.y",
		".db-20250102T030405Z.tar.gz.aes256gcm.tmp-123",
		".db-20250102T030405Z.tar.age.sha256.tmp-9",
	} {
		if !IsTemp(base) {
			t.Errorf("IsTemp(%q) = false", base)
		}
	}
	for _, base := range []string{
		"snapshot-20240101T000000Z.tar.gz.tmp-1", // not hidden
		".snapshot-20240101T000000Z.tar.gz",      // no random part
		".snapshot-20240101T000000Z.tgz.tmp-1",   // not a snapshot name
		".keyring.json.tmp-1",                    // another file's temporary
		".data.restore.journal.tmp-9",
		".snapshot-20240101T000000Z.tar.gz.tmp",
		"..snapshot-20240101T000000Z.tar.gz.tmp-1",
	} {
		if IsTemp(base) {
			t.Errorf("IsTemp(%q) = true", base)
		}
	}
}

// TestVerifyWith_MisnamedCompression: restore and verify pick the decoder
// by the name's extension, the one grammar of snapshot names (".tgz" is not
// in it). A compressed archive under a name announcing none (a hand-made
// backup.tgz, say) is refused untouched with the name to give it.
func TestVerifyWith_MisnamedCompression(t *testing.T) {
	for _, tc := range []struct {
		comp, rename, hint string
	}{
		{CompressionGzip, "backup.tgz", ".tar.gz"},
		{CompressionGzip, "backup.tar", ".tar.gz"},
		{CompressionZstd, "backup.tar", ".tar.zst"},
		{CompressionZstd, "backup.zst", ".tar.zst"},
	} {
		t.Run(tc.comp+"-as-"+tc.rename, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "data")
			smallTree(t, src)
			cfg := testConfig(t, tc.comp, src)
			info, err := Create(context.Background(), cfg, testLogger(t))
			must(t, err)
			p := filepath.Join(cfg.Dir, tc.rename)
			must(t, os.Rename(info.Path, p))
			writeSum(t, p)
			err = VerifyWith(context.Background(), p, seal.Config{})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("VerifyWith(%s) = %v, want ErrCorrupt naming %s", tc.rename, err, tc.hint)
			}
		})
	}
}
