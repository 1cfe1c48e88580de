package seal_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"

	"snapvisor/config"
	"snapvisor/internal/fuzzseed"
	"snapvisor/internal/sealtest"
	"snapvisor/seal"
)

// The generator of this package's seed corpora. TestFuzzSeeds checks them
// (every seed file present, deterministic ones byte for byte) in every test
// run; FUZZ_SEEDS=update go test -run TestFuzzSeeds ./seal/ rewrites them.

// must fails the test on error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// open decrypts ct to its end; it fails when the result differs from plain without an error.
func open(enc seal.Config, alg string, ct, plain []byte) error {
	r, err := seal.NewReader(bytes.NewReader(ct), alg, enc)
	if err != nil {
		return err
	}
	got, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, plain) {
		return errors.New("decrypted to different plaintext WITHOUT an error")
	}
	return nil
}

// gpgSeal encrypts plain with go-crypto directly, with cheap S2K settings
// (the production writer's S2K costs 65 MiB of hashing per file): to the
// fuzz key when s2kConfig is nil, else with the fuzz passphrase.
func gpgSeal(t *testing.T, plain []byte, s2kConfig *s2k.Config, aead bool) []byte {
	var buf bytes.Buffer
	cfg := &packet.Config{DefaultCipher: packet.CipherAES256, DefaultHash: crypto.SHA256, DefaultCompressionAlgo: packet.CompressionNone, S2KConfig: s2kConfig}
	if aead {
		cfg.AEADConfig = &packet.AEADConfig{}
	}
	var w io.WriteCloser
	var err error
	if s2kConfig == nil {
		w, err = openpgp.Encrypt(&buf, []*openpgp.Entity{sealtest.GPGEntity(t)}, nil, &openpgp.FileHints{IsBinary: true}, cfg)
	} else {
		w, err = openpgp.SymmetricallyEncrypt(&buf, []byte(sealtest.GPGPass), &openpgp.FileHints{IsBinary: true}, cfg)
	}
	must(t, err)
	_, err = w.Write(plain)
	must(t, err)
	must(t, w.Close())
	return buf.Bytes()
}

// helloTarGz is the gzip stream of a tar holding data/ and data/f ("hello"):
// what a snapshot encrypts.
func helloTarGz(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "data/", Mode: 0o755}))
	must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "data/f", Mode: 0o644, Size: 5}))
	_, err := io.WriteString(tw, "hello")
	must(t, err)
	must(t, tw.Close())
	must(t, zw.Close())
	return buf.Bytes()
}

func TestFuzzSeeds(t *testing.T) {
	plain := helloTarGz(t)
	long := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16+8) // two 64 KiB chunks
	dec := seal.Config{Keys: config.Secret(sealtest.GCMKeyID + ":" + sealtest.GCMKey), Key: sealtest.CBCPass, PBKDF2Iter: 1,
		AgeRecipients: []string{sealtest.AgeRecipient(t)}, AgePassphrase: sealtest.AgePass}.WithAgeWorkFactor(10)
	sealWith := func(alg string, p []byte) []byte {
		e := dec
		e.Algorithm = alg
		if alg == seal.Age {
			e.AgePassphrase = ""
		}
		return sealtest.Seal(t, e, p)
	}
	agePass := dec
	agePass.Algorithm, agePass.AgeRecipients = seal.Age, nil
	decryptSeeds := []fuzzseed.Seed{
		{Name: "aes256-gcm", Args: []any{uint8(0), sealWith(seal.AESGCM, plain)}, Random: true},
		{Name: "aes256-gcm-2-chunks", Args: []any{uint8(0), sealWith(seal.AESGCM, long)}, Random: true},
		{Name: "aes256-cbc", Args: []any{uint8(1), sealWith(seal.AESCBC, plain)}, Random: true},
		{Name: "aes256-cbc-long", Args: []any{uint8(1), sealWith(seal.AESCBC, long)}, Random: true},
		{Name: "age-recipient", Args: []any{uint8(2), sealWith(seal.Age, plain)}, Random: true},
		{Name: "age-recipient-2-chunks", Args: []any{uint8(2), sealWith(seal.Age, long)}, Random: true},
		{Name: "age-passphrase", Args: []any{uint8(2), sealtest.Seal(t, agePass, plain)}, Random: true},
		{Name: "gpg-public-key", Args: []any{uint8(3), gpgSeal(t, plain, nil, false)}, Random: true},
		{Name: "gpg-passphrase", Args: []any{uint8(3), gpgSeal(t, plain, &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 1024}, false)}, Random: true},
		{Name: "gpg-passphrase-aead", Args: []any{uint8(3), gpgSeal(t, long, &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 1024}, true)}, Random: true},
		{Name: "gpg-argon2", Args: []any{uint8(3), gpgSeal(t, plain, &s2k.Config{S2KMode: s2k.Argon2S2K, Argon2Config: &s2k.Argon2Config{NumberOfPasses: 1, DegreeOfParallelism: 1, Memory: 64}}, false)}, Random: true},
		{Name: "gpg-argon2-hostile", Args: []any{uint8(3), hostileGPG(31)}},
		{Name: "age-scrypt-hostile", Args: []any{uint8(2), hostileAge(22)}},
		{Name: "empty-gcm", Args: []any{uint8(0), []byte{}}},
		{Name: "magic-only-gcm", Args: []any{uint8(0), []byte(seal.GCMMagic)}},
		{Name: "magic-only-cbc", Args: []any{uint8(1), []byte(seal.CBCMagic)}},
		{Name: "magic-only-age", Args: []any{uint8(2), []byte(seal.AgeMagic)}},
		{Name: "pgp-marker-only", Args: []any{uint8(3), []byte{0xc3}}},
	}
	fuzzseed.Sync(t, "FuzzDecrypt", decryptSeeds)

	gcm := sealWith(seal.AESGCM, nil)
	hdrLen := seal.GCMHeaderLen(len(sealtest.GCMKeyID))
	withByte := func(i int, b byte) []byte { h := bytes.Clone(gcm[:hdrLen]); h[i] = b; return h }
	fuzzseed.Sync(t, "FuzzReadGCMHeader", []fuzzseed.Seed{
		{Name: "valid", Args: []any{gcm[:hdrLen]}, Random: true},
		{Name: "version-2", Args: []any{withByte(len(seal.GCMMagic), 2)}, Random: true},
		{Name: "id-length-0", Args: []any{withByte(len(seal.GCMMagic)+1, 0)}, Random: true},
		{Name: "id-length-65", Args: []any{withByte(len(seal.GCMMagic)+1, 65)}, Random: true},
		{Name: "id-bad-char", Args: []any{withByte(len(seal.GCMMagic)+2, '/')}, Random: true},
		{Name: "truncated", Args: []any{gcm[:hdrLen-1]}, Random: true},
		{Name: "magic-only", Args: []any{[]byte(seal.GCMMagic)}},
	})

	var roundTrip []fuzzseed.Seed
	for i, alg := range roundTripAlgorithms {
		for _, p := range []struct {
			name         string
			plain, sizes []byte
		}{
			{"empty", nil, nil},
			{"one-byte", []byte("x"), nil},
			{"block-minus-one", bytes.Repeat([]byte("a"), 15), []byte{1}},
			{"block", bytes.Repeat([]byte("a"), 16), []byte{7}},
			{"block-plus-one", bytes.Repeat([]byte("a"), 17), []byte{16, 0}},
			{"chunk-plus-one", bytes.Repeat([]byte("abcdefgh"), 64<<10/8+1)[:64<<10+1], []byte{255, 255, 3}},
		} {
			roundTrip = append(roundTrip, fuzzseed.Seed{Name: alg + "-" + p.name, Args: []any{uint8(i), p.plain, p.sizes}})
		}
	}
	fuzzseed.Sync(t, "FuzzEncryption_RoundTrip", roundTrip)

	k1, k2 := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	var rings []fuzzseed.Seed
	for _, s := range []string{
		"# comment\n\n old-1:" + k1 + "\r\nnew.2:" + k2 + ":2025-01-02T04:04:05+01:00\n", "a:" + k1, "a:" + k1 + ":2025-01-02T03:04:05.123456789Z",
		"a:" + k1 + ":0000-01-01T00:30:00+01:00", "a:" + k1 + ":9999-12-31T23:30:00-01:00", "\xef\xbb\xbfa:" + k1, "a:" + k1 + "\na:" + k2,
		k1 + ":a", "abc", "-x:" + k1, strings.Repeat("a", 65) + ":" + k1, "a:" + k1[:20] + "!!", "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",
		"a:" + k1 + ":yesterday", "a: " + strings.TrimRight(k1, "=") + " ", "a:" + strings.NewReplacer("+", "-", "/", "_").Replace(k2), "",
	} {
		rings = append(rings, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}})
	}
	fuzzseed.Sync(t, "FuzzParseKeyring", rings)

	var durations []fuzzseed.Seed
	for _, s := range []string{"", " ", "90d", " 12w ", "2160h", "1d12h", "0", "-1d", "1y", "1.5w", "106752d", "+3d"} {
		durations = append(durations, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}})
	}
	fuzzseed.Sync(t, "FuzzParseDuration", durations)
}
