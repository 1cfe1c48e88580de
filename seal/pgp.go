package seal

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"

	"snapvisor/config"
)

// Bounds on the key derivation a file may ask for. A snapshot is decrypted
// before anything vouches for it (the .sha256 detects damage, not an
// attacker), and without them a file of a few bytes makes restore allocate
// up to 2 TiB (gpg Argon2: a fatal out-of-memory) or 4 GiB (age scrypt) and
// compute for minutes. They admit what snapvisor, age, rage, GnuPG and RFC
// 9580's recommended parameters write.
const (
	maxAgeWorkFactor     = 20 // scrypt 2^20: 1 GiB; snapvisor and age write 2^18
	maxArgon2MemoryExp   = 21 // Argon2 2^21 KiB = 2 GiB, RFC 9580's first recommended choice
	maxPassphrasePackets = 16 // each may cost 65 MiB of hashing (iterated S2K)
	pgpScanLimit         = 64 << 10
)

// --- age ---

func parseAgeRecipient(s string) (age.Recipient, error) {
	if strings.HasPrefix(s, "ssh-") {
		return agessh.ParseRecipient(s)
	}
	rs, err := age.ParseRecipients(strings.NewReader(s))
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

func parseAgeIdentities(b []byte) ([]age.Identity, error) {
	b = trimBOM(b)
	if bytes.Contains(b, []byte("-----BEGIN")) && bytes.Contains(b, []byte("PRIVATE KEY-----")) {
		id, err := agessh.ParseIdentity(b)
		if err != nil {
			return nil, fmt.Errorf("SSH private key: %v", err)
		}
		return []age.Identity{id}, nil
	}
	return age.ParseIdentities(bytes.NewReader(b))
}

func (e Config) encryptAge(w io.Writer) (io.WriteCloser, error) {
	rs, err := e.ageRecipients()
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		if e.AgePassphrase == "" {
			return nil, errors.New("age needs SNAPVISOR_AGE_RECIPIENTS(_FILE) or SNAPVISOR_AGE_PASSPHRASE")
		}
		sr, err := age.NewScryptRecipient(e.AgePassphrase.Reveal())
		if err != nil {
			return nil, errors.New("age passphrase recipient: invalid passphrase")
		}
		if e.scryptLogN > 0 {
			sr.SetWorkFactor(e.scryptLogN)
		}
		rs = []age.Recipient{sr}
	}
	return age.Encrypt(w, rs...)
}

func (e Config) decryptAge(r io.Reader) (io.Reader, error) {
	ids, err := e.ageIdentities()
	if err != nil {
		return nil, err
	}
	if e.AgePassphrase != "" {
		si, err := age.NewScryptIdentity(e.AgePassphrase.Reveal())
		if err == nil {
			si.SetMaxWorkFactor(maxAgeWorkFactor)
			ids = append(ids, si)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the snapshot is age encrypted and neither SNAPVISOR_AGE_IDENTITY(_FILE) nor SNAPVISOR_AGE_PASSPHRASE is set", ErrKey)
	}
	pr, err := age.Decrypt(r, ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("%w: age: no configured identity or passphrase opens this snapshot (%v)", ErrKey, err)
		}
		return nil, fmt.Errorf("%w: age: %v", ErrDamaged, err)
	}
	return pr, nil
}

// --- gpg (OpenPGP) ---

// pgpConfig writes what GnuPG 2.2 and later read: AES-256 in a SEIPD packet
// with MDC, no compression (the data is compressed already), iterated and
// salted SHA-256 S2K for passphrases.
func pgpConfig() *packet.Config {
	return &packet.Config{
		DefaultCipher:          packet.CipherAES256,
		DefaultHash:            crypto.SHA256,
		DefaultCompressionAlgo: packet.CompressionNone,
		S2KConfig:              &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 65011712},
	}
}

// readPGPKeys parses an armored or binary key ring.
func readPGPKeys(b []byte) (openpgp.EntityList, error) {
	b = trimBOM(b)
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PGP")) {
		return openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	}
	return openpgp.ReadKeyRing(bytes.NewReader(b))
}

// gpgPublicKeys returns the OpenPGP public keys Validate read (reads them now
// for a Config that has not passed Validate).
func (e Config) gpgPublicKeys() (openpgp.EntityList, error) {
	if e.creds != nil {
		return e.creds.gpgPublic, nil
	}
	return e.readGPGPublicKeys()
}

// readGPGPublicKeys parses SNAPVISOR_GPG_PUBLIC_KEYRING (a path or armored
// text); every key must be able to encrypt.
func (e Config) readGPGPublicKeys() (openpgp.EntityList, error) {
	v := strings.TrimSpace(e.GPGPublicKeyring)
	if v == "" {
		return nil, nil
	}
	shown := e.GPGPublicKeyring
	var b []byte
	if strings.HasPrefix(v, "-----BEGIN PGP") {
		b, shown = []byte(v), "(armored key text)"
	} else {
		var err error
		if b, err = os.ReadFile(v); err != nil {
			ce := config.Invalid("GPG_PUBLIC_KEYRING", shown, "the path of an OpenPGP public key ring (gpg --export) or its armored text")
			ce.Err = err
			return nil, ce
		}
	}
	keys, err := readPGPKeys(b)
	if err == nil && len(keys) == 0 {
		err = errors.New("no keys in it")
	}
	if err == nil {
		for _, k := range keys {
			if _, ok := k.EncryptionKey(time.Now()); !ok {
				err = fmt.Errorf("key %X has no valid encryption subkey", k.PrimaryKey.Fingerprint)
				break
			}
		}
	}
	if err != nil {
		ce := config.Invalid("GPG_PUBLIC_KEYRING", shown, "an OpenPGP public key ring (gpg --export [--armor]) whose keys can encrypt")
		ce.Err = err
		return nil, ce
	}
	return keys, nil
}

// gpgSecretKeys returns the OpenPGP secret keys Validate parsed (parses them
// now for a Config that has not passed Validate).
func (e Config) gpgSecretKeys() (openpgp.EntityList, error) {
	if e.creds != nil {
		return e.creds.gpgSecret, nil
	}
	return e.readGPGSecretKeys()
}

// readGPGSecretKeys parses SNAPVISOR_GPG_SECRET_KEYRING.
func (e Config) readGPGSecretKeys() (openpgp.EntityList, error) {
	if e.GPGSecretKeyring == "" {
		return nil, nil
	}
	keys, err := readPGPKeys([]byte(e.GPGSecretKeyring.Reveal()))
	if err == nil && len(keys) == 0 {
		err = errors.New("no keys in it")
	}
	if err != nil {
		return nil, secretInvalid("GPG_SECRET_KEYRING", "armored OpenPGP secret keys (gpg --export-secret-keys --armor)", err)
	}
	return keys, nil
}

func (e Config) encryptGPG(w io.Writer) (io.WriteCloser, error) {
	pub, err := e.gpgPublicKeys()
	if err != nil {
		return nil, err
	}
	hints := &openpgp.FileHints{IsBinary: true}
	if len(pub) > 0 {
		return openpgp.Encrypt(w, pub, nil, hints, pgpConfig())
	}
	if e.GPGPassphrase == "" {
		return nil, errors.New("gpg needs SNAPVISOR_GPG_PASSPHRASE(_FILE) or SNAPVISOR_GPG_PUBLIC_KEYRING")
	}
	return openpgp.SymmetricallyEncrypt(w, []byte(e.GPGPassphrase.Reveal()), hints, pgpConfig())
}

func (e Config) decryptGPG(r io.Reader) (io.Reader, error) {
	keys, err := e.gpgSecretKeys()
	if err != nil {
		return nil, err
	}
	pass := e.GPGPassphrase.Reveal()
	if len(keys) == 0 && pass == "" {
		return nil, fmt.Errorf("%w: the snapshot is gpg encrypted and neither SNAPVISOR_GPG_PASSPHRASE nor SNAPVISOR_GPG_SECRET_KEYRING is set", ErrKey)
	}
	asked := false
	prompt := func(candidates []openpgp.Key, symmetric bool) ([]byte, error) {
		if asked || pass == "" {
			return nil, pgperrors.ErrKeyIncorrect
		}
		asked = true
		for _, k := range candidates {
			if k.PrivateKey != nil && k.PrivateKey.Encrypted {
				_ = k.PrivateKey.Decrypt([]byte(pass)) // a wrong passphrase leaves it locked
			}
		}
		return []byte(pass), nil
	}
	var ring openpgp.KeyRing
	if len(keys) > 0 {
		ring = keys
	}
	if r, err = checkPGPKDF(r, maxArgon2MemoryExp); err != nil {
		return nil, err
	}
	md, err := openpgp.ReadMessage(r, ring, prompt, nil)
	if err != nil {
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return nil, fmt.Errorf("%w: gpg: neither the passphrase (SNAPVISOR_GPG_PASSPHRASE) nor a secret key (SNAPVISOR_GPG_SECRET_KEYRING) opens this snapshot", ErrKey)
		}
		return nil, fmt.Errorf("%w: gpg: %v", ErrDamaged, err)
	}
	if !md.IsEncrypted {
		return nil, fmt.Errorf("%w: gpg: the file is not encrypted", ErrDamaged)
	}
	return &pgpBody{md: md, src: r}, nil
}

// checkPGPKDF refuses an OpenPGP message r whose passphrase packets ask for
// Argon2 with more than 2^maxMemExp KiB, or that has more than
// maxPassphrasePackets of them, before go-crypto (which has no such limit)
// runs the derivation. It returns a reader of the whole message.
func checkPGPKDF(r io.Reader, maxMemExp byte) (io.Reader, error) {
	memExp, n, head := pgpKDF(r)
	if n > maxPassphrasePackets {
		return nil, fmt.Errorf("%w: gpg: more than %d passphrase packets", ErrDamaged, maxPassphrasePackets)
	}
	if memExp > int(maxMemExp) {
		return nil, fmt.Errorf("%w: gpg: the passphrase packet asks for Argon2 with 2^%d KiB of memory; at most 2^%d KiB is accepted", ErrDamaged, memExp, maxMemExp)
	}
	return io.MultiReader(head, r), nil
}

// pgpKDF reads the session key packets at the start of the OpenPGP message r
// (at most pgpScanLimit bytes) and returns the largest Argon2 memory
// exponent its passphrase packets ask for (0: none), their number, and the
// bytes it read. The packet framing is go-crypto's; the few bytes of the
// passphrase packet (RFC 9580 5.3) are read here because go-crypto keeps its
// parsed S2K parameters unexported.
func pgpKDF(r io.Reader) (maxMemExp, passphrases int, head *bytes.Buffer) {
	head = &bytes.Buffer{}
	packets := packet.NewOpaqueReader(io.TeeReader(io.LimitReader(r, pgpScanLimit), head))
	for {
		p, err := packets.Next()
		if err != nil || (p.Tag != 1 && p.Tag != 3 && p.Tag != 10) { // public-key and passphrase session keys, marker
			return maxMemExp, passphrases, head
		}
		if p.Tag != 3 {
			continue
		}
		passphrases++
		c := p.Contents
		i := 2 // S2K after version and cipher; v5 adds the AEAD mode, v6 two lengths more
		if len(c) > 0 && c[0] >= 5 {
			i++
		}
		if len(c) > 0 && c[0] == 6 {
			i += 2
		}
		// Argon2 (mode 4): 16 bytes of salt, passes, parallelism, memory exponent.
		if len(c) > i+19 && c[i] == 4 {
			maxMemExp = max(maxMemExp, int(c[i+19]))
		}
	}
}

// Work is the key derivation an encrypted file asks for before it can be
// opened, each as a power of two: age's scrypt work factor (2^AgeScrypt)
// and gpg's Argon2 memory (2^GPGArgon2 KiB); 0 when it asks for none.
// NewReader refuses more than MaxAgeWorkFactor and MaxArgon2MemoryExp.
type Work struct{ AgeScrypt, GPGArgon2 int }

// Limits of Work that NewReader accepts.
const (
	MaxAgeWorkFactor   = maxAgeWorkFactor
	MaxArgon2MemoryExp = maxArgon2MemoryExp
)

// KDFWork reads the key derivation the file starting with head asks for
// (fuzz tests skip what is accepted but slow).
func KDFWork(head []byte) Work {
	var w Work
	if bytes.HasPrefix(head, []byte(ageMagic)) {
		for _, line := range strings.Split(string(head), "\n") {
			if strings.HasPrefix(line, "---") {
				break
			}
			if f := strings.Fields(line); len(f) >= 4 && f[0] == "->" && f[1] == "scrypt" {
				if n, err := strconv.Atoi(f[3]); err == nil {
					w.AgeScrypt = max(w.AgeScrypt, n)
				}
			}
		}
	}
	w.GPGArgon2, _, _ = pgpKDF(bytes.NewReader(head))
	return w
}

// pgpBody reads the literal data and, at its end, reports a failed integrity
// (MDC) check and data appended after the message.
type pgpBody struct {
	md  *openpgp.MessageDetails
	src io.Reader
}

func (b *pgpBody) Read(p []byte) (int, error) {
	n, err := b.md.UnverifiedBody.Read(p)
	if errors.Is(err, io.EOF) {
		if b.md.SignatureError != nil {
			return n, b.md.SignatureError
		}
		var one [1]byte
		if m, _ := io.ReadFull(b.src, one[:]); m > 0 {
			return n, errors.New("data after the end of the OpenPGP message")
		}
	}
	return n, err
}
