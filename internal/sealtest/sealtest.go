// Package sealtest holds the credentials of the encryption fuzz targets and
// their seed corpora (test values that protect nothing), shared by the tests
// of seal (FuzzDecrypt, FuzzEncryption_RoundTrip) and snapshot (FuzzRestore,
// whose seeds are encrypted snapshots). Every encrypted seed is made with
// them, and the targets decrypt with them, so that mutations reach the
// chunk framing behind a header that authenticates. It is imported by tests
// only.
package sealtest

import (
	"bytes"
	_ "embed"
	"testing"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"

	"snapvisor/config"
	"snapvisor/seal"
)

// The fuzz credentials.
const (
	GCMKeyID    = "fuzz"
	GCMKey      = "+26SZJXYBpwW5Fp5CS/KKUzk5/mrr0Hzhn2+sw4WKb4="
	CBCPass     = "snapvisor fuzz passphrase"
	AgeIdentity = "AGE-SECRET-KEY-1RUK7WT9LXGVH5JXT9HV0Z45QR69H9UU36YC4J7PZ9ADYTGJ9CAJQGL02JD"
	AgePass     = "snapvisor fuzz age passphrase"
	GPGPass     = "snapvisor fuzz gpg passphrase"
)

// GPGSecret is an OpenPGP key pair (armored secret key; the public key is in
// it), made once with openpgp.NewEntity("snapvisor fuzz", "test key,
// protects nothing", "fuzz@snapvisor.invalid", EdDSA on Curve25519).
//
//go:embed fuzz-gpg-secret.asc
var GPGSecret []byte

// Config returns the credentials that decrypt every fuzz seed (Algorithm
// none: they decrypt, whatever a file's suffix names).
func Config() seal.Config {
	return seal.Config{
		Keys:             config.Secret(GCMKeyID + ":" + GCMKey),
		Key:              CBCPass,
		PBKDF2Iter:       1000, // the least Validate accepts; each file pays it once
		AgeIdentity:      AgeIdentity,
		AgePassphrase:    AgePass,
		GPGPassphrase:    GPGPass,
		GPGSecretKeyring: config.Secret(GPGSecret),
	}
}

// AgeRecipient is the recipient of AgeIdentity.
func AgeRecipient(t testing.TB) string {
	t.Helper()
	id, err := age.ParseX25519Identity(AgeIdentity)
	if err != nil {
		t.Fatal(err)
	}
	return id.Recipient().String()
}

// GPGEntity is the key pair of GPGSecret.
func GPGEntity(t testing.TB) *openpgp.Entity {
	t.Helper()
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(GPGSecret))
	if err != nil {
		t.Fatal(err)
	}
	return keys[0]
}

// Seal encrypts plain with enc into memory, in odd write sizes.
func Seal(t testing.TB, enc seal.Config, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := seal.NewWriter(&buf, enc)
	if err != nil {
		t.Fatal(err)
	}
	for p := plain; len(p) > 0; {
		n := min(len(p), 10000)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// CostlyKDF reports whether ct asks for a key derivation that production
// accepts but that is too slow for a fuzz execution: an age scrypt work
// factor above 2^12 or gpg Argon2 with more than 2^16 KiB (production
// accepts up to seal.MaxAgeWorkFactor and seal.MaxArgon2MemoryExp, bounded
// costs of seconds that would only slow fuzzing down).
func CostlyKDF(ct []byte) bool {
	w := seal.KDFWork(ct)
	return (w.AgeScrypt > 12 && w.AgeScrypt <= seal.MaxAgeWorkFactor) || (w.GPGArgon2 > 16 && w.GPGArgon2 <= seal.MaxArgon2MemoryExp)
}
