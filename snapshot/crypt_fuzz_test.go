package snapshot

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"

	"snapvisor/config"
)

// Credentials of the fuzz targets and their seed corpora (test values that
// protect nothing): every encrypted seed is made with them, and the targets
// decrypt with them, so that mutations reach the chunk framing behind a
// header that authenticates.
const (
	fuzzGCMKeyID    = "fuzz"
	fuzzGCMKey      = "+26SZJXYBpwW5Fp5CS/KKUzk5/mrr0Hzhn2+sw4WKb4="
	fuzzCBCPass     = "snapvisor fuzz passphrase"
	fuzzAgeIdentity = "AGE-SECRET-KEY-1RUK7WT9LXGVH5JXT9HV0Z45QR69H9UU36YC4J7PZ9ADYTGJ9CAJQGL02JD"
	fuzzAgePass     = "snapvisor fuzz age passphrase"
	fuzzGPGPass     = "snapvisor fuzz gpg passphrase"
	// fuzzGPGSecretFile holds an OpenPGP key pair made by TestFuzzSeeds
	// (armored secret key; the public key is in it).
	fuzzGPGSecretFile = "testdata/fuzz-gpg-secret.asc"
)

var fuzzGPGSecret = sync.OnceValues(func() ([]byte, error) { return os.ReadFile(fuzzGPGSecretFile) })

// fuzzEncryption returns the credentials that decrypt every fuzz seed
// (Algorithm none: they decrypt, whatever a file's suffix names).
func fuzzEncryption(t testing.TB) Encryption {
	t.Helper()
	sec, err := fuzzGPGSecret()
	if err != nil {
		t.Fatalf("%v (FUZZ_SEEDS=update go test -run TestFuzzSeeds ./snapshot/ writes it)", err)
	}
	return Encryption{
		Keys:             config.Secret(fuzzGCMKeyID + ":" + fuzzGCMKey),
		Key:              fuzzCBCPass,
		PBKDF2Iter:       1000, // the least Validate accepts; each file pays it once
		AgeIdentity:      fuzzAgeIdentity,
		AgePassphrase:    fuzzAgePass,
		GPGPassphrase:    fuzzGPGPass,
		GPGSecretKeyring: config.Secret(sec),
	}
}

// fuzzAgeRecipient is the recipient of fuzzAgeIdentity.
func fuzzAgeRecipient(t testing.TB) string {
	id, err := age.ParseX25519Identity(fuzzAgeIdentity)
	if err != nil {
		t.Fatal(err)
	}
	return id.Recipient().String()
}

// ageScryptRE finds the work factor of an age scrypt stanza.
var ageScryptRE = regexp.MustCompile(`(?m)^-> scrypt \S+ (\d+)`)

// costlyKDF reports whether ct asks for a key derivation that production
// accepts but that is too slow for a fuzz execution: an age scrypt work
// factor above 2^12 or gpg Argon2 with more than 2^16 KiB (production
// accepts up to maxAgeWorkFactor and maxArgon2MemoryExp, bounded costs of
// seconds that would only slow fuzzing down).
func costlyKDF(ct []byte) bool {
	for _, m := range ageScryptRE.FindAllSubmatch(ct, -1) {
		if n, err := strconv.Atoi(string(m[1])); err != nil || (n > 12 && n <= maxAgeWorkFactor) {
			return true
		}
	}
	if _, err := checkPGPKDF(bytes.NewReader(ct), 16); err != nil {
		_, err := checkPGPKDF(bytes.NewReader(ct), maxArgon2MemoryExp)
		return err == nil
	}
	return false
}

// decryptAlgorithms are the algorithms FuzzDecrypt picks from.
var decryptAlgorithms = []string{EncryptionAESGCM, EncryptionAESCBC, EncryptionAge, EncryptionGPG}

// isClassified reports whether err tells the user what happened: damage or a
// wrong or missing key (the two kinds restore and verify report).
func isClassified(err error) bool { return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrKey) }

// FuzzDecrypt feeds any bytes to our decryption wrappers, the algorithm
// picked by alg: a header or ciphertext that does not decrypt gives an
// error wrapping ErrCorrupt or ErrKey, from decrypt or from Read — never a
// panic, a hang or an allocation beyond a bound.
func FuzzDecrypt(f *testing.F) {
	enc := fuzzEncryption(f)
	enc.PBKDF2Iter = 1 // decrypt does not validate: keep executions fast
	f.Fuzz(func(t *testing.T, alg uint8, ct []byte) {
		if len(ct) > 1<<20 || costlyKDF(ct) {
			return
		}
		_ = sniffEncryption(ct)
		algorithm := decryptAlgorithms[int(alg)%len(decryptAlgorithms)]
		r, err := enc.decrypt(bytes.NewReader(ct), algorithm)
		if err != nil {
			if !isClassified(err) {
				t.Fatalf("decrypt (%s): %v, wraps neither ErrCorrupt nor ErrKey", algorithm, err)
			}
			return
		}
		// OpenPGP may hold a compressed packet: the plaintext can be larger
		// than the file. Read a bounded amount.
		n, err := io.Copy(io.Discard, io.LimitReader(r, 64<<20))
		if err != nil && !isClassified(err) {
			t.Fatalf("read (%s) after %d bytes: %v, wraps neither ErrCorrupt nor ErrKey", algorithm, n, err)
		}
		if algorithm != EncryptionGPG && n > int64(len(ct)) {
			t.Fatalf("%s: %d bytes of plaintext from %d of ciphertext", algorithm, n, len(ct))
		}
	})
}

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
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("readGCMHeader: %v, not ErrCorrupt", err)
			}
			return
		}
		if !keyIDRE.MatchString(h.keyID) {
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

// roundTripAlgorithms are the algorithms FuzzEncryption_RoundTrip picks
// from: those whose key setup costs microseconds (gpg's passphrase S2K is
// fixed at 65 MiB of hashing; its writer is the library's).
var roundTripAlgorithms = []string{EncryptionAESGCM, EncryptionAESCBC, EncryptionAge}

// FuzzEncryption_RoundTrip: any plaintext, written in any sequence of write
// sizes, decrypts to itself (our aes256-cbc writer buffers partial blocks;
// aes256-gcm and age frame 64 KiB chunks).
func FuzzEncryption_RoundTrip(f *testing.F) {
	dec := fuzzEncryption(f)
	dec.PBKDF2Iter = 1
	recipient := fuzzAgeRecipient(f)
	f.Fuzz(func(t *testing.T, alg uint8, plain, sizes []byte) {
		algorithm := roundTripAlgorithms[int(alg)%len(roundTripAlgorithms)]
		if len(plain) > 1<<20 || (len(plain) == 0 && algorithm == EncryptionAESGCM) {
			// sio writes no package for an empty stream, which then reads as
			// truncated; a compressed tar stream is never empty.
			return
		}
		enc := dec
		enc.Algorithm = algorithm
		enc.AgePassphrase = ""
		enc.AgeRecipients = []string{recipient}
		var buf bytes.Buffer
		w, finish, err := enc.encryptTo(&buf)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := 0, plain; len(p) > 0; i++ {
			n := len(p)
			if len(sizes) > 0 {
				// 1 byte to 64 KiB + 1: around every block and chunk size.
				n = min(n, 1+int(sizes[i%len(sizes)])*int(sizes[(i+1)%len(sizes)])+int(sizes[i%len(sizes)]))
			}
			if _, err := w.Write(p[:n]); err != nil {
				t.Fatal(err)
			}
			p = p[n:]
		}
		if err := finish(); err != nil {
			t.Fatal(err)
		}
		if err := open(dec, algorithm, buf.Bytes(), plain); err != nil {
			t.Fatalf("%s round trip of %d bytes: %v", algorithm, len(plain), err)
		}
	})
}

// hostileGPG returns an OpenPGP message whose passphrase packet (SKESK v4)
// asks for Argon2 with 2^memExp KiB of memory, followed by an encrypted data
// packet that does not matter: the key derivation runs first.
func hostileGPG(memExp byte) []byte {
	skesk := []byte{4, 9, 4} // version 4, AES-256, S2K mode 4 (Argon2)
	skesk = append(skesk, bytes.Repeat([]byte{0x5a}, 16)...)
	skesk = append(skesk, 1, 1, memExp) // passes, parallelism, memory exponent
	msg := append([]byte{0xc3, byte(len(skesk))}, skesk...)
	seipd := append([]byte{1}, bytes.Repeat([]byte{0xa5}, 40)...)
	return append(append(msg, 0xd2, byte(len(seipd))), seipd...)
}

// hostileAge returns an age file whose scrypt stanza asks for 2^logN.
func hostileAge(logN int) []byte {
	b64 := func(n int) string { return base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, n)) }
	return []byte("age-encryption.org/v1\n-> scrypt " + b64(16) + " " + strconv.Itoa(logN) + "\n" + b64(32) + "\n--- " + b64(32) + "\n" + string(bytes.Repeat([]byte{0xa5}, 60)))
}

// TestEncryption_HostileKDF: a file that asks for a key derivation beyond
// what any snapvisor or common tool writes (Argon2 with up to 2 TiB, scrypt
// with up to 4 GiB) is refused before the derivation runs, with an error
// that says why; found by FuzzDecrypt. Before, gpg crashed the process
// ("fatal error: runtime: out of memory") and age allocated 2^logN KiB.
func TestEncryption_HostileKDF(t *testing.T) {
	enc := Encryption{GPGPassphrase: fuzzGPGPass, AgePassphrase: fuzzAgePass}
	for _, tc := range []struct {
		name, alg string
		ct        []byte
		says      string
	}{
		{"gpg-argon2-2TiB", EncryptionGPG, hostileGPG(31), "Argon2"},
		{"gpg-argon2-4GiB", EncryptionGPG, hostileGPG(22), "Argon2"},
		{"age-scrypt-2GiB", EncryptionAge, hostileAge(21), "work factor"},
		{"age-scrypt-4GiB", EncryptionAge, hostileAge(22), "work factor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := enc.decrypt(bytes.NewReader(tc.ct), tc.alg)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("decrypt = %v, want ErrCorrupt saying %q", err, tc.says)
			}
		})
	}
}
