package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"snapvisor/config"
)

// Fuzz targets of the small grammars: the aes256-gcm header, the keyring
// file and the durations of the encryption settings. Their seed corpora are
// written by TestFuzzSeeds (fuzzseeds_test.go).

// FuzzReadGCMHeader: readGCMHeader never panics; what it accepts is exactly
// the header encryptGCM writes: magic, version, key id of the keyring's
// syntax, salt, then the MAC.
func FuzzReadGCMHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		h, err := readGCMHeader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("readGCMHeader: %v, not ErrDamaged", err)
			}
			return
		}
		if !keyIDRE().MatchString(h.keyID) {
			t.Fatalf("accepted key id %q", h.keyID)
		}
		want := append([]byte(gcmMagic), gcmVersion, byte(len(h.keyID)))
		want = append(append(want, h.keyID...), h.salt...)
		if !bytes.Equal(h.signed, want) || len(h.salt) != gcmSaltSize || len(h.mac) != gcmMACSize {
			t.Fatalf("header %q: signed %q, salt %d bytes, mac %d bytes", b, h.signed, len(h.salt), len(h.mac))
		}
		if !bytes.HasPrefix(b, append(append([]byte{}, h.signed...), h.mac...)) {
			t.Fatalf("header %q parsed as bytes it does not start with", b)
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
			if !keyIDRE().MatchString(a.ID) || len(a.material) != keySize {
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
		a := config.NewAge(v)
		if err := a.Check("KEY_ROTATION", acceptedDuration); err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != config.Var("KEY_ROTATION") || ce.Value != v {
				t.Fatalf("Age(%q).Check: %v, not a *config.Error naming SNAPVISOR_KEY_ROTATION with the value as written", v, err)
			}
			return
		}
		d := a.Duration()
		if d < 0 {
			t.Fatalf("Age(%q) = %v", v, d)
		}
		if strings.TrimSpace(v) == "" && d != 0 {
			t.Fatalf("Age(%q) = %v, want 0", v, d)
		}
	})
}
