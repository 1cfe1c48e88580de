package restic

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	//lint:ignore SA1019 restic's format authenticates with Poly1305-AES (its design document): the building block is what it needs
	"golang.org/x/crypto/poly1305"
	"golang.org/x/crypto/scrypt"
)

// The repository's cipher, as restic's design document specifies it:
// AES-256-CTR with a random 16-byte IV, authenticated with Poly1305-AES over
// the ciphertext. A sealed message is IV || ciphertext || MAC.
const (
	ivSize    = aes.BlockSize
	macSize   = poly1305.TagSize
	extension = ivSize + macSize // bytes a plaintext grows by when sealed
)

// ErrUnauthenticated: a sealed message's MAC does not match (a wrong key or
// damaged data).
var ErrUnauthenticated = errors.New("ciphertext verification failed (wrong password or damaged data)")

// poly1305KeyMask clamps r as Poly1305 requires.
var poly1305KeyMask = [16]byte{0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f}

// Key is a repository's master key (or a key derived from a password):
// the AES-256 key and the Poly1305-AES key (k, r).
type Key struct {
	Encrypt [32]byte
	MACK    [16]byte
	MACR    [16]byte

	block cipher.Block // AES-256 with Encrypt
	mac   cipher.Block // AES-128 with MACK
}

// jsonKey is the master key as stored, encrypted, in a key file.
type jsonKey struct {
	MAC struct {
		K []byte `json:"k"`
		R []byte `json:"r"`
	} `json:"mac"`
	Encrypt []byte `json:"encrypt"`
}

func (k *Key) init() error {
	var err error
	if k.block, err = aes.NewCipher(k.Encrypt[:]); err != nil {
		return err
	}
	for i := range k.MACR {
		k.MACR[i] &= poly1305KeyMask[i]
	}
	k.mac, err = aes.NewCipher(k.MACK[:])
	return err
}

// newRandomKey makes a new master key.
func newRandomKey() (*Key, error) {
	k := &Key{}
	for _, b := range [][]byte{k.Encrypt[:], k.MACK[:], k.MACR[:]} {
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
	}
	return k, k.init()
}

func (k *Key) MarshalJSON() ([]byte, error) {
	var j jsonKey
	j.MAC.K, j.MAC.R, j.Encrypt = k.MACK[:], k.MACR[:], k.Encrypt[:]
	return json.Marshal(j)
}

func (k *Key) UnmarshalJSON(data []byte) error {
	var j jsonKey
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if len(j.MAC.K) != 16 || len(j.MAC.R) != 16 || len(j.Encrypt) != 32 {
		return errors.New("master key has the wrong length")
	}
	copy(k.MACK[:], j.MAC.K)
	copy(k.MACR[:], j.MAC.R)
	copy(k.Encrypt[:], j.Encrypt)
	return k.init()
}

// String never shows key material.
func (k *Key) String() string { return "restic.Key(redacted)" }

// kdf derives the key that opens a key file from a password (scrypt).
func kdf(password []byte, salt []byte, n, r, p int) (*Key, error) {
	b, err := scrypt.Key(password, salt, n, r, p, 64)
	if err != nil {
		return nil, fmt.Errorf("scrypt: %w", err)
	}
	k := &Key{}
	copy(k.Encrypt[:], b[:32])
	copy(k.MACK[:], b[32:48])
	copy(k.MACR[:], b[48:64])
	return k, k.init()
}

func (k *Key) tag(nonce, ciphertext []byte) [16]byte {
	var pk [32]byte
	copy(pk[:16], k.MACR[:])
	k.mac.Encrypt(pk[16:], nonce)
	var out [16]byte
	poly1305.Sum(&out, ciphertext, &pk)
	return out
}

// Seal appends IV || AES-CTR(plaintext) || MAC to dst.
func (k *Key) Seal(dst, plaintext []byte) []byte {
	n := len(dst)
	dst = grow(dst, extension+len(plaintext))
	out := dst[n : n+extension+len(plaintext)]
	iv := out[:ivSize]
	if _, err := rand.Read(iv); err != nil {
		panic("restic: no random bytes for an IV: " + err.Error())
	}
	ct := out[ivSize : ivSize+len(plaintext)]
	cipher.NewCTR(k.block, iv).XORKeyStream(ct, plaintext)
	mac := k.tag(iv, ct)
	copy(out[ivSize+len(plaintext):], mac[:])
	return dst[:n+len(out)]
}

// Open authenticates and decrypts a sealed message, appending the plaintext to dst.
func (k *Key) Open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < extension {
		return nil, fmt.Errorf("ciphertext of %d bytes is too short", len(sealed))
	}
	iv, ct, mac := sealed[:ivSize], sealed[ivSize:len(sealed)-macSize], sealed[len(sealed)-macSize:]
	var zero [ivSize]byte
	if subtle.ConstantTimeCompare(iv, zero[:]) == 1 {
		return nil, errors.New("invalid nonce (all zero)")
	}
	want := k.tag(iv, ct)
	if subtle.ConstantTimeCompare(want[:], mac) != 1 {
		return nil, ErrUnauthenticated
	}
	n := len(dst)
	dst = grow(dst, len(ct))
	cipher.NewCTR(k.block, iv).XORKeyStream(dst[n:n+len(ct)], ct)
	return dst[:n+len(ct)], nil
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// ID names every file and blob of a repository: the SHA-256 of its content.
type ID [32]byte

// Hash is the ID of data.
func Hash(data []byte) ID { return sha256.Sum256(data) }

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Str is the short form restic prints (8 hex digits).
func (id ID) Str() string { return hex.EncodeToString(id[:4]) }

// IsNull reports whether id is all zero.
func (id ID) IsNull() bool { return id == ID{} }

// ParseID parses a 64-digit hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("invalid ID %q", s)
	}
	copy(id[:], b)
	return id, nil
}

func (id ID) MarshalJSON() ([]byte, error) { return json.Marshal(id.String()) }

func (id *ID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseID(s)
	if err != nil {
		return err
	}
	*id = v
	return nil
}
