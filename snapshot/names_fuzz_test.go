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

// FuzzParseName: ParseName never panics; what it accepts, FileName writes
// back byte for byte, and EncryptionOf and compressionOf (which restore and
// verify use to pick the decoders) agree with it.
func FuzzParseName(f *testing.F) {
	f.Fuzz(func(t *testing.T, base string) {
		if len(base) > 512 {
			return
		}
		name, ts, comp, ok := ParseName(base)
		enc := EncryptionOf(base)
		if !ok {
			return
		}
		if !nameRE.MatchString(name) {
			t.Fatalf("ParseName(%q) gave the name %q, which SNAPVISOR_NAME cannot be", base, name)
		}
		cfg := Config{Name: name, Compression: comp, Encryption: seal.Config{Algorithm: enc}}
		if back := FileName(cfg, ts); back != base {
			t.Fatalf("ParseName(%q) = %q %v %q %q; FileName gives %q", base, name, ts, comp, enc, back)
		}
		if c := compressionOf(base); c != comp {
			t.Fatalf("ParseName(%q) says %s, compressionOf says %s", base, comp, c)
		}
	})
}

// FuzzFileName: every name SNAPVISOR_NAME accepts, at any time with a
// four-digit year, compression and encryption, gives a file name that
// ParseName reads back into the same parts (and that List would list).
func FuzzFileName(f *testing.F) {
	f.Fuzz(func(t *testing.T, name string, unix int64, comp, alg uint8) {
		if !nameRE.MatchString(name) || len(name) > 200 {
			return
		}
		ts := time.Unix(unix, 0).UTC()
		if ts.Year() < 0 || ts.Year() > 9999 {
			return
		}
		cfg := Config{Name: name, Compression: compressions[int(comp)%len(compressions)],
			Encryption: seal.Config{Algorithm: algorithms[int(alg)%len(algorithms)]}}
		base := FileName(cfg, ts)
		n, got, c, ok := ParseName(base)
		if !ok || n != name || !got.Equal(ts) || c != cfg.Compression || EncryptionOf(base) != cfg.Encryption.Effective() {
			t.Fatalf("FileName = %q; ParseName gives %q %v %q %v and EncryptionOf %q", base, n, got, c, ok, EncryptionOf(base))
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
