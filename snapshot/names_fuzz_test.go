package snapshot

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"snapvisor/seal"
)

// Fuzz targets of the small grammars: snapshot names and checksum files
// (those of the keyring file and of the encryption settings are seal's). Their seed
// corpora are written by TestFuzzSeeds (fuzzseeds_test.go).

// compressions and algorithms list every value a name can announce.
var (
	compressions = []string{CompressionNone, CompressionGzip, CompressionZstd}
	algorithms   = []string{seal.None, seal.AESGCM, seal.Age, seal.GPG, seal.AESCBC}
)

// The regexps name.go replaced, kept as test oracles: the hand-written
// parsers must accept exactly what they matched (time stamps that are no
// time excepted), so that names on disk stay what they were.
var (
	legacyNameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	legacySnapshotRE = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9._-]*)-(\d{8}T\d{6}Z)(\.tar(?:\.gz|\.zst)?)(\.aes256gcm|\.age|\.gpg|\.aes256cbc)?$`)
	legacyTempRE     = regexp.MustCompile(`^\.[A-Za-z0-9][A-Za-z0-9._-]*-\d{8}T\d{6}Z\.tar(?:\.gz|\.zst)?(?:\.aes256gcm|\.age|\.gpg|\.aes256cbc)?(?:\.sha256)?\.tmp-.*$`)
	stampRE          = regexp.MustCompile(`\d{8}T\d{6}Z`)
)

// FuzzParseName: ParseFileName never panics; it accepts exactly what the
// old regexp did (with a valid time); what it accepts, Name.String writes
// back byte for byte, and formatOf (which restore and verify use to pick
// the decoders) agrees with it. IsTemp matches what the old regexp did.
func FuzzParseName(f *testing.F) {
	f.Fuzz(func(t *testing.T, base string) {
		if len(base) > 512 {
			return
		}
		n, ok := ParseFileName(base)
		if m := legacySnapshotRE.FindStringSubmatch(base); (m != nil && validStamp(m[2])) != ok {
			t.Fatalf("ParseFileName(%q) ok = %v; the old grammar says %v", base, ok, m != nil)
		}
		checkIsTemp(t, base)
		if !ok {
			return
		}
		if !legacyNameRE.MatchString(n.Prefix) || !validPrefix(n.Prefix) {
			t.Fatalf("ParseFileName(%q) gave the name %q, which SNAPVISOR_NAME cannot be", base, n.Prefix)
		}
		if back := n.String(); back != base {
			t.Fatalf("ParseFileName(%q) = %+v; String gives %q", base, n, back)
		}
		if af := formatOf(base, seal.Config{}); af.compression != n.Compression || af.encryption != n.Encryption {
			t.Fatalf("ParseFileName(%q) says %s %s, formatOf says %s %s", base, n.Compression, n.Encryption, af.compression, af.encryption)
		}
		if _, tempOK := ParseFileName(strings.TrimSuffix(TempName(base), "*") + "1"); tempOK || !IsTemp(strings.TrimSuffix(TempName(base), "*")+"x") {
			t.Fatalf("the temporary name of %q is not told apart as one", base)
		}
	})
}

// checkIsTemp compares IsTemp with the old temporary-name regexp, which
// also matched time stamps that are no time, and no newline in the random part.
func checkIsTemp(t *testing.T, base string) {
	t.Helper()
	old, got := legacyTempRE.MatchString(base), IsTemp(base)
	if got && !old && !strings.Contains(base, "\n") {
		t.Fatalf("IsTemp(%q) = true; the old regexp did not match it", base)
	}
	if !got && old {
		for _, s := range stampRE.FindAllString(base, -1) {
			if !validStamp(s) {
				return
			}
		}
		t.Fatalf("IsTemp(%q) = false; the old regexp matched it", base)
	}
}

func validStamp(s string) bool {
	_, err := time.Parse(TimeLayout, s)
	return err == nil
}

// FuzzFileName: every name SNAPVISOR_NAME accepts, at any time with a
// four-digit year, compression and encryption, gives a file name (String)
// that ParseFileName reads back into the same parts (and that List would list).
func FuzzFileName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string, unix int64, comp, alg uint8) {
		if legacyNameRE.MatchString(name) != validPrefix(name) {
			t.Fatalf("validPrefix(%q) = %v, the old SNAPVISOR_NAME regexp says otherwise", name, validPrefix(name))
		}
		if !validPrefix(name) || len(name) > 200 {
			return
		}
		ts := time.Unix(unix, 0).UTC()
		if ts.Year() < 0 || ts.Year() > 9999 {
			return
		}
		cfg := Config{Name: name, Compression: compressions[int(comp)%len(compressions)],
			Encryption: seal.Config{Algorithm: algorithms[int(alg)%len(algorithms)]}}
		base := cfg.NameAt(ts).String()
		n, ok := ParseFileName(base)
		if !ok || n.Prefix != name || !n.Time.Equal(ts) || n.Compression != cfg.Compression || n.Encryption != cfg.Encryption.Effective() {
			t.Fatalf("String = %q; ParseFileName gives %+v %v", base, n, ok)
		}
		if !legacySnapshotRE.MatchString(base) {
			t.Fatalf("String = %q, which the old grammar does not match", base)
		}
	})
}

// FuzzReadChecksum: ReadChecksum never panics on any .sha256 content; what
// it accepts is 64 lowercase hex digits, from a file that is exactly the
// sha256sum line naming the archive (text or binary mode, either case).
func FuzzReadChecksum(f *testing.F) {
	dir := f.TempDir()
	archive := filepath.Join(dir, "snapshot-20240101T000000Z.tar.gz")
	hexRE := regexp.MustCompile(`^[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, content []byte) {
		if len(content) > 64<<10 {
			return
		}
		must(t, os.WriteFile(archive+".sha256", content, 0o600))
		sum, err := ReadChecksum(archive)
		if err != nil {
			return
		}
		if !hexRE.MatchString(sum) {
			t.Fatalf("ReadChecksum accepted %q as %q", content, sum)
		}
		line := strings.ToLower(string(content))
		if line != sum+"  "+strings.ToLower(filepath.Base(archive))+"\n" && line != sum+" *"+strings.ToLower(filepath.Base(archive))+"\n" {
			t.Fatalf("ReadChecksum accepted %q, not the sha256sum line of %s", content, filepath.Base(archive))
		}
	})
}
