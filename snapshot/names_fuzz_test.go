package snapshot

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"snapvisor/config"
)

// Fuzz targets of the small grammars: snapshot names, checksum files, the
// keyring file and the durations of the encryption settings. Their seed
// corpora are written by TestFuzzSeeds (fuzzseeds_test.go).

// compressions and algorithms list every value a name can announce.
var (
	compressions = []string{CompressionNone, CompressionGzip, CompressionZstd}
	algorithms   = []string{EncryptionNone, EncryptionAESGCM, EncryptionAge, EncryptionGPG, EncryptionAESCBC}
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
		cfg := Config{Name: name, Compression: comp, Encryption: Encryption{Algorithm: enc}}
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
			Encryption: Encryption{Algorithm: algorithms[int(alg)%len(algorithms)]}}
		base := FileName(cfg, ts)
		n, got, c, ok := ParseName(base)
		if !ok || n != name || !got.Equal(ts) || c != cfg.Compression || EncryptionOf(base) != cfg.Encryption.algorithm() {
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

// FuzzParseKeyring: ParseKeyring never panics; what it accepts, Format
// writes so that ParseKeyring reads back the same keys (ids, material,
// creation times); its errors never contain key material, not even a key
// written in the wrong field.
func FuzzParseKeyring(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 16<<10 {
			return
		}
		ring, err := ParseKeyring(text)
		if err != nil {
			for _, line := range strings.Split(text, "\n") {
				for _, field := range strings.FieldsFunc(line, func(r rune) bool { return r == ':' || r == ' ' || r == '\t' || r == '\r' }) {
					if _, kerr := decodeKey(field); kerr == nil && strings.Contains(err.Error(), field) {
						t.Fatalf("ParseKeyring error %q shows the key %q", err, field)
					}
				}
			}
			return
		}
		back, err := ParseKeyring(string(ring.Format()))
		if err != nil {
			t.Fatalf("ParseKeyring(Format(ParseKeyring(%q))): %v\nFormat:\n%s", text, err, ring.Format())
		}
		if len(back) != len(ring) {
			t.Fatalf("round trip: %d keys, then %d", len(ring), len(back))
		}
		for i := range ring {
			a, b := ring[i], back[i]
			if a.ID != b.ID || !bytes.Equal(a.material, b.material) || !a.Created.Equal(b.Created) {
				t.Fatalf("round trip of key %d: %s %v %s, then %s %v %s", i, a.ID, a.Created, base64.StdEncoding.EncodeToString(a.material),
					b.ID, b.Created, base64.StdEncoding.EncodeToString(b.material))
			}
			if !keyIDRE.MatchString(a.ID) || len(a.material) != keySize {
				t.Fatalf("accepted key %q with %d bytes", a.ID, len(a.material))
			}
		}
	})
}

// FuzzParseDuration: the durations of SNAPVISOR_KEY_ROTATION and
// SNAPVISOR_OLD_KEYS_RETENTION parse to a non-negative value or fail with a
// *config.Error naming the variable; blanks mean 0.
func FuzzParseDuration(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		if len(v) > 256 {
			return
		}
		d, err := parseDuration("KEY_ROTATION", v)
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != config.Var("KEY_ROTATION") {
				t.Fatalf("parseDuration(%q): %v, not a *config.Error naming SNAPVISOR_KEY_ROTATION", v, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("parseDuration(%q) = %v", v, d)
		}
		if strings.TrimSpace(v) == "" && d != 0 {
			t.Fatalf("parseDuration(%q) = %v, want 0", v, d)
		}
	})
}
