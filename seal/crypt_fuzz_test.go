package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"snapvisor/internal/sealtest"
	"snapvisor/seal"
)

// decryptAlgorithms are the algorithms FuzzDecrypt picks from.
var decryptAlgorithms = []string{seal.AESGCM, seal.AESCBC, seal.Age, seal.GPG}

// isClassified reports whether err tells the user what happened: damage or a
// wrong or missing key (the two kinds restore and verify report).
func isClassified(err error) bool {
	return errors.Is(err, seal.ErrDamaged) || errors.Is(err, seal.ErrKey)
}

// FuzzDecrypt feeds any bytes to our decryption wrappers, the algorithm
// picked by alg: a header or ciphertext that does not decrypt gives an
// error wrapping ErrDamaged or ErrKey, from NewReader or from Read — never a
// panic, a hang or an allocation beyond a bound.
func FuzzDecrypt(f *testing.F) {
	enc := sealtest.Config()
	enc.PBKDF2Iter = 1 // NewReader does not validate: keep executions fast
	f.Fuzz(func(t *testing.T, alg uint8, ct []byte) {
		if len(ct) > 1<<20 || sealtest.CostlyKDF(ct) {
			return
		}
		_ = seal.Sniff(ct)
		algorithm := decryptAlgorithms[int(alg)%len(decryptAlgorithms)]
		r, err := seal.NewReader(bytes.NewReader(ct), algorithm, enc)
		if err != nil {
			if !isClassified(err) {
				t.Fatalf("NewReader (%s): %v, wraps neither ErrDamaged nor ErrKey", algorithm, err)
			}
			return
		}
		// OpenPGP may hold a compressed packet: the plaintext can be larger
		// than the file. Read a bounded amount.
		n, err := io.Copy(io.Discard, io.LimitReader(r, 64<<20))
		if err != nil && !isClassified(err) {
			t.Fatalf("read (%s) after %d bytes: %v, wraps neither ErrDamaged nor ErrKey", algorithm, n, err)
		}
		if algorithm != seal.GPG && n > int64(len(ct)) {
			t.Fatalf("%s: %d bytes of plaintext from %d of ciphertext", algorithm, n, len(ct))
		}
	})
}

// roundTripAlgorithms are the algorithms FuzzEncryption_RoundTrip picks
// from: those whose key setup costs microseconds (gpg's passphrase S2K is
// fixed at 65 MiB of hashing; its writer is the library's).
var roundTripAlgorithms = []string{seal.AESGCM, seal.AESCBC, seal.Age}

// FuzzEncryption_RoundTrip: any plaintext, written in any sequence of write
// sizes, decrypts to itself (our aes256-cbc writer buffers partial blocks;
// aes256-gcm and age frame 64 KiB chunks).
func FuzzEncryption_RoundTrip(f *testing.F) {
	dec := sealtest.Config()
	dec.PBKDF2Iter = 1
	recipient := sealtest.AgeRecipient(f)
	f.Fuzz(func(t *testing.T, alg uint8, plain, sizes []byte) {
		algorithm := roundTripAlgorithms[int(alg)%len(roundTripAlgorithms)]
		if len(plain) > 1<<20 || (len(plain) == 0 && algorithm == seal.AESGCM) {
			// sio writes no package for an empty stream, which then reads as
			// truncated; a compressed tar stream is never empty.
			return
		}
		enc := dec
		enc.Algorithm = algorithm
		enc.AgePassphrase = ""
		enc.AgeRecipients = []string{recipient}
		var buf bytes.Buffer
		w, err := seal.NewWriter(&buf, enc)
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
		if err := w.Close(); err != nil {
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
func TestNewReader_HostileKDF(t *testing.T) {
	enc := seal.Config{GPGPassphrase: sealtest.GPGPass, AgePassphrase: sealtest.AgePass}
	for _, tc := range []struct {
		name, alg string
		ct        []byte
		says      string
	}{
		{"gpg-argon2-2TiB", seal.GPG, hostileGPG(31), "Argon2"},
		{"gpg-argon2-4GiB", seal.GPG, hostileGPG(22), "Argon2"},
		{"age-scrypt-2GiB", seal.Age, hostileAge(21), "work factor"},
		{"age-scrypt-4GiB", seal.Age, hostileAge(22), "work factor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := seal.NewReader(bytes.NewReader(tc.ct), tc.alg, enc)
			if !errors.Is(err, seal.ErrDamaged) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("NewReader = %v, want ErrDamaged saying %q", err, tc.says)
			}
		})
	}
}
