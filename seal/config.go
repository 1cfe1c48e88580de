package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"filippo.io/age"
	"github.com/ProtonMail/go-crypto/openpgp"

	"snapvisor/config"
)

// DefaultPBKDF2Iter is the default of SNAPVISOR_PBKDF2_ITER (OWASP's 2023
// figure for PBKDF2-HMAC-SHA256).
const DefaultPBKDF2Iter = 600000

// Config is the encryption configuration (loaded by config.Load with the
// other specs; it is the Encryption field of snapshot.Config). Algorithm selects how
// new snapshots are written; every credential configured here is also used to
// decrypt existing snapshots, whatever algorithm their suffix names. The zero
// value is "no encryption".
//
// Key material lives in config.Secret fields (never printed) and in the
// keyring file. Validate parses every credential once, reading the files,
// and keeps the result in the Config; NewWriter, NewReader and KeyStates use
// it. A snapshot reads the keyring file again (RereadKeyring); a Config that
// has not passed Validate parses what it needs at each use.
type Config struct {
	Algorithm string `envconfig:"SNAPVISOR_ENCRYPTION" default:"none" desc:"none, aes256-gcm (recommended), age, gpg or aes256-cbc; the file gets .aes256gcm, .age, .gpg or .aes256cbc after the compression suffix and restore detects the algorithm of each file"`
	// Key is one aes256-gcm key (base64 of 32 bytes; its key id is
	// key-<8 hex digits of its hash>) or the aes256-cbc passphrase.
	Key config.Secret `envconfig:"SNAPVISOR_ENCRYPTION_KEY" desc:"aes256-gcm: base64 of 32 random bytes (openssl rand -base64 32); aes256-cbc: the passphrase given to openssl enc -pass (the same base64 line serves)"`
	// Keys is the aes256-gcm keyring: lines id:base64key[:created]; the last line encrypts.
	Keys config.Secret `envconfig:"SNAPVISOR_ENCRYPTION_KEYS" desc:"aes256-gcm keyring, one key a line: id:base64key or id:base64key:created (RFC 3339); the last line encrypts, every line (and ENCRYPTION_KEY) decrypts"`
	// KeysFile is the path of the keyring (SNAPVISOR_ENCRYPTION_KEYS_FILE), read by Validate and again before each snapshot.
	KeysFile string `envconfig:"SNAPVISOR_ENCRYPTION_KEYS_FILE" desc:"path of the keyring file, read once by each command (a restore, however many snapshots it tries) and again before every snapshot; with KEY_ROTATION the entrypoint rewrites it (temporary file and rename, mode 0600)"`
	// Rotation is SNAPVISOR_KEY_ROTATION (config.ParseAge syntax); empty: off.
	Rotation config.Age `envconfig:"SNAPVISOR_KEY_ROTATION" desc:"aes256-gcm: when the newest key of ENCRYPTION_KEYS_FILE is older than this (90d, 12w), generate a random key, append it to the file and encrypt with it from then on; empty: never"`
	// OldKeysRetention is SNAPVISOR_OLD_KEYS_RETENTION (config.ParseAge syntax).
	OldKeysRetention config.Age `envconfig:"SNAPVISOR_OLD_KEYS_RETENTION" default:"7d" desc:"with KEY_ROTATION, a replaced key stays in the keyring at least this long after its replacement, and as long as a snapshot in SNAPVISOR_DIR uses it"`
	// PBKDF2Iter is the aes256-cbc PBKDF2-SHA256 iteration count (openssl enc -iter).
	PBKDF2Iter int `envconfig:"SNAPVISOR_PBKDF2_ITER" default:"600000" desc:"aes256-cbc: PBKDF2-SHA256 iterations (openssl enc -d -aes-256-cbc -pbkdf2 -iter N); restore needs the same number"`
	// AgeRecipients are age recipients (age1..., age1pq1..., ssh-ed25519 ..., ssh-rsa ...).
	AgeRecipients []string `envconfig:"SNAPVISOR_AGE_RECIPIENTS" desc:"age: comma-separated recipients (age1..., age1pq1..., ssh-ed25519 AAAA..., ssh-rsa AAAA...)"`
	// AgeRecipientsFile is a recipients file as age -R reads it.
	AgeRecipientsFile string `envconfig:"SNAPVISOR_AGE_RECIPIENTS_FILE" desc:"age: file of recipients, one a line, # comments (the format of age -R)"`
	// AgePassphrase encrypts with age's scrypt recipient instead of recipients, and decrypts.
	AgePassphrase config.Secret `envconfig:"SNAPVISOR_AGE_PASSPHRASE" desc:"age: passphrase (scrypt) instead of recipients; also decrypts passphrase-encrypted snapshots"`
	// AgeIdentity holds the identities that decrypt age snapshots.
	AgeIdentity config.Secret `envconfig:"SNAPVISOR_AGE_IDENTITY" desc:"age: identities that decrypt on restore (AGE-SECRET-KEY-1... lines as age-keygen writes them, or an unencrypted OpenSSH private key); usually SNAPVISOR_AGE_IDENTITY_FILE"`
	// GPGPassphrase is the OpenPGP symmetric passphrase; with GPGSecretKeyring it also unlocks the secret keys.
	GPGPassphrase config.Secret `envconfig:"SNAPVISOR_GPG_PASSPHRASE" desc:"gpg: symmetric passphrase (what gpg --symmetric asks for); with GPG_SECRET_KEYRING it also unlocks protected secret keys"`
	// GPGPublicKeyring is a path to (or the armored text of) an OpenPGP public key ring.
	GPGPublicKeyring string `envconfig:"SNAPVISOR_GPG_PUBLIC_KEYRING" desc:"gpg: path of an OpenPGP public key ring (gpg --export, binary or --armor), or its armored text; snapshots are encrypted to every key in it instead of the passphrase"`
	// GPGSecretKeyring holds the OpenPGP secret keys that decrypt public-key encrypted snapshots.
	GPGSecretKeyring config.Secret `envconfig:"SNAPVISOR_GPG_SECRET_KEYRING" desc:"gpg: armored secret keys that decrypt public-key encrypted snapshots on restore (gpg --export-secret-keys --armor); usually SNAPVISOR_GPG_SECRET_KEYRING_FILE"`

	// scryptLogN overrides age's scrypt work factor (tests only; 0: age's default, 18).
	scryptLogN int
	// creds are the credentials Validate parsed; nil before.
	creds *credentials
}

// credentials are a Config's parsed key material, never changed once made.
type credentials struct {
	ring       Keyring // ENCRYPTION_KEYS or the file ENCRYPTION_KEYS_FILE
	recipients []age.Recipient
	identities []age.Identity
	gpgPublic  openpgp.EntityList
	gpgSecret  openpgp.EntityList
}

// Effective returns the algorithm new files are written with: Algorithm,
// None when it is empty.
func (e Config) Effective() string {
	if e.Algorithm == "" {
		return None
	}
	return e.Algorithm
}

// WithAgeWorkFactor returns e with age's scrypt work factor for passphrase
// encryption set to 2^logN (age's default, used when logN is 0, is 2^18,
// about a second); tests use small values to run fast.
func (e Config) WithAgeWorkFactor(logN int) Config {
	e.scryptLogN = logN
	return e
}

const (
	acceptedAlgorithm = "none, aes256-gcm, age, gpg or aes256-cbc"
	acceptedKey       = "base64 of 32 random bytes, e.g. the output of `openssl rand -base64 32`"
	acceptedKeyring   = "lines id:base64key or id:base64key:created, id of letters, digits, '.', '_' and '-' (at most 64), base64 of 32 bytes, created in RFC 3339; # comments"
	acceptedDuration  = "empty, or a duration such as 90d, 12w or 2160h"
)

func secretInvalid(name, accepted string, err error) *config.Error {
	return &config.Error{Var: config.Var(name), Secret: true, Accepted: accepted, Err: err}
}

// Validate checks the encryption settings: the algorithm, that it has what it
// needs to encrypt, and the syntax of every credential given, reading the
// keyring, recipients and key ring files once; it keeps what it parsed in e.
// Errors are *config.Error values naming the variable; secret values are
// never shown.
func (e *Config) Validate() error {
	e.creds = nil
	var c credentials
	alg := e.Effective()
	if alg != None && suffixes[alg] == "" {
		return config.Invalid("ENCRYPTION", e.Algorithm, acceptedAlgorithm)
	}
	if e.Key != "" && alg == AESGCM {
		if _, err := decodeKey(e.Key.Reveal()); err != nil {
			return secretInvalid("ENCRYPTION_KEY", acceptedKey, err)
		}
	}
	ring, err := e.readKeyring()
	if err != nil {
		return err
	}
	c.ring = ring
	if err := e.Rotation.Check("KEY_ROTATION", acceptedDuration); err != nil {
		return err
	}
	if err := e.OldKeysRetention.Check("OLD_KEYS_RETENTION", acceptedDuration); err != nil {
		return err
	}
	interval := e.Rotation.Duration()
	if interval > 0 {
		if alg != AESGCM {
			return config.Invalid("KEY_ROTATION", e.Rotation.String(), "empty unless SNAPVISOR_ENCRYPTION=aes256-gcm (only its files carry a key id)")
		}
		if e.KeysFile == "" {
			return config.Invalid("KEY_ROTATION", e.Rotation.String(), "empty unless SNAPVISOR_ENCRYPTION_KEYS_FILE names the keyring file the entrypoint may rewrite (create it empty, mode 0600, for a first key to be generated)")
		}
	}
	if e.PBKDF2Iter < 0 || (e.PBKDF2Iter != 0 && e.PBKDF2Iter < 1000) {
		return config.Invalid("PBKDF2_ITER", strconv.Itoa(e.PBKDF2Iter), "a whole number of at least 1000 (openssl's default is 10000; 600000 is the default here; 0 means the default)")
	}
	recipients, err := e.readAgeRecipients()
	if err != nil {
		return err
	}
	c.recipients = recipients
	if c.identities, err = e.readAgeIdentities(); err != nil {
		return err
	}
	pub, err := e.readGPGPublicKeys()
	if err != nil {
		return err
	}
	c.gpgPublic = pub
	if c.gpgSecret, err = e.readGPGSecretKeys(); err != nil {
		return err
	}
	switch alg {
	case AESGCM:
		if e.Key == "" && len(ring) == 0 && interval == 0 {
			return config.Invalid("ENCRYPTION", alg, "aes256-gcm with a key: SNAPVISOR_ENCRYPTION_KEY, SNAPVISOR_ENCRYPTION_KEYS (or _FILE), or SNAPVISOR_KEY_ROTATION with SNAPVISOR_ENCRYPTION_KEYS_FILE")
		}
	case AESCBC:
		if e.Key == "" {
			return config.Invalid("ENCRYPTION", alg, "aes256-cbc with a passphrase in SNAPVISOR_ENCRYPTION_KEY (or _FILE)")
		}
	case Age:
		switch {
		case len(recipients) == 0 && e.AgePassphrase == "":
			return config.Invalid("ENCRYPTION", alg, "age with SNAPVISOR_AGE_RECIPIENTS, SNAPVISOR_AGE_RECIPIENTS_FILE or SNAPVISOR_AGE_PASSPHRASE")
		case len(recipients) > 0 && e.AgePassphrase != "":
			return config.Invalid("AGE_RECIPIENTS", strings.Join(e.AgeRecipients, ","), "recipients or SNAPVISOR_AGE_PASSPHRASE, not both (age cannot mix a passphrase with recipients)")
		}
	case GPG:
		if len(pub) == 0 && e.GPGPassphrase == "" {
			return config.Invalid("ENCRYPTION", alg, "gpg with SNAPVISOR_GPG_PASSPHRASE (or _FILE) or SNAPVISOR_GPG_PUBLIC_KEYRING")
		}
	}
	e.creds = &c
	return nil
}

// RereadKeyring returns e with its keyring read again from
// SNAPVISOR_ENCRYPTION_KEYS_FILE, as each snapshot does before it encrypts,
// so that a keyring rewritten since Validate (by key rotation or by hand)
// is used; the errors are Validate's for that variable. e is returned as it
// is when it names no keyring file or has not passed Validate.
func (e Config) RereadKeyring() (Config, error) {
	if e.KeysFile == "" || e.creds == nil {
		return e, nil
	}
	ring, err := e.readKeyring()
	if err != nil {
		return Config{}, err
	}
	c := *e.creds
	c.ring = ring
	e.creds = &c
	return e, nil
}

func (e Config) pbkdf2Iter() int {
	if e.PBKDF2Iter <= 0 {
		return DefaultPBKDF2Iter
	}
	return e.PBKDF2Iter
}

// decodeKey decodes a base64 (standard or URL alphabet, padded or not) 32-byte key.
// Errors never contain the input.
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != keySize {
				return nil, fmt.Errorf("the key is %d bytes, not %d", len(b), keySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("the key is not valid base64")
}

// keyring returns the keyring Validate read; for a Config that has not
// passed Validate, it reads it now.
func (e Config) keyring() (Keyring, error) {
	if e.creds != nil {
		return e.creds.ring, nil
	}
	return e.readKeyring()
}

// readKeyring reads the configured keyring: the file when KeysFile is set,
// else Keys.
func (e Config) readKeyring() (Keyring, error) {
	text := e.Keys.Reveal()
	name := "ENCRYPTION_KEYS"
	if e.KeysFile != "" {
		b, err := os.ReadFile(e.KeysFile)
		if err != nil {
			return nil, &config.Error{Var: config.Var("ENCRYPTION_KEYS_FILE"), Value: e.KeysFile,
				Accepted: "the path of a readable keyring file (create it empty, mode 0600, to have a key generated with KEY_ROTATION)", Err: err}
		}
		text = string(b)
		name = "ENCRYPTION_KEYS_FILE"
	}
	ring, err := ParseKeyring(text)
	if err != nil {
		if name == "ENCRYPTION_KEYS_FILE" {
			return nil, &config.Error{Var: config.Var(name), Value: e.KeysFile, Accepted: acceptedKeyring, Err: err}
		}
		return nil, secretInvalid(name, acceptedKeyring, err)
	}
	return ring, nil
}

// gcmKeys returns every aes256-gcm key that decrypts: the keyring and ENCRYPTION_KEY.
func (e Config) gcmKeys() (Keyring, error) {
	ring, err := e.keyring()
	if err != nil {
		return nil, err
	}
	if e.Key != "" {
		if b, err := decodeKey(e.Key.Reveal()); err == nil {
			k := Key{ID: singleKeyID(b), material: b}
			if _, dup := ring.Lookup(k.ID); !dup {
				ring = append(ring, k)
			}
		}
	}
	return ring, nil
}

// currentGCMKey returns the key new aes256-gcm snapshots are encrypted with:
// the keyring's last key, or ENCRYPTION_KEY when the keyring is empty.
func (e Config) currentGCMKey() (Key, error) {
	ring, err := e.keyring()
	if err != nil {
		return Key{}, err
	}
	if k, ok := ring.Newest(); ok {
		return k, nil
	}
	if e.Key != "" {
		b, err := decodeKey(e.Key.Reveal())
		if err != nil {
			return Key{}, secretInvalid("ENCRYPTION_KEY", acceptedKey, err)
		}
		return Key{ID: singleKeyID(b), material: b}, nil
	}
	return Key{}, fmt.Errorf("%w: aes256-gcm has no key: set SNAPVISOR_ENCRYPTION_KEY, or SNAPVISOR_ENCRYPTION_KEYS(_FILE) with at least one line", ErrKey)
}

// ageRecipients returns the age recipients Validate parsed (parses them now
// for a Config that has not passed Validate).
func (e Config) ageRecipients() ([]age.Recipient, error) {
	if e.creds != nil {
		return e.creds.recipients, nil
	}
	return e.readAgeRecipients()
}

// readAgeRecipients parses AgeRecipients and AgeRecipientsFile.
func (e Config) readAgeRecipients() ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range e.AgeRecipients {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		r, err := parseAgeRecipient(s)
		if err != nil {
			ce := config.Invalid("AGE_RECIPIENTS", strings.Join(e.AgeRecipients, ","), "comma-separated age recipients: age1..., age1pq1..., ssh-ed25519 AAAA... or ssh-rsa AAAA...")
			ce.Err = err
			return nil, ce
		}
		out = append(out, r)
	}
	if e.AgeRecipientsFile != "" {
		b, err := os.ReadFile(e.AgeRecipientsFile)
		if err == nil {
			var rs []age.Recipient
			rs, err = parseAgeRecipientLines(b)
			out = append(out, rs...)
		}
		if err != nil {
			ce := config.Invalid("AGE_RECIPIENTS_FILE", e.AgeRecipientsFile, "a readable file of age recipients, one a line")
			ce.Err = err
			return nil, ce
		}
	}
	return out, nil
}

func parseAgeRecipientLines(b []byte) ([]age.Recipient, error) {
	var out []age.Recipient
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, err := parseAgeRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no recipients found")
	}
	return out, nil
}

// ageIdentities returns the age identities Validate parsed (parses them now
// for a Config that has not passed Validate).
func (e Config) ageIdentities() ([]age.Identity, error) {
	if e.creds != nil {
		return e.creds.identities, nil
	}
	return e.readAgeIdentities()
}

// readAgeIdentities parses AgeIdentity (age identity lines or one OpenSSH private key).
func (e Config) readAgeIdentities() ([]age.Identity, error) {
	if e.AgeIdentity == "" {
		return nil, nil
	}
	ids, err := parseAgeIdentities([]byte(e.AgeIdentity.Reveal()))
	if err != nil {
		return nil, secretInvalid("AGE_IDENTITY", "age identities (AGE-SECRET-KEY-1... lines as written by age-keygen) or an unencrypted OpenSSH private key", err)
	}
	return ids, nil
}

// trimBOM strips a UTF-8 byte order mark some editors write.
func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) }
