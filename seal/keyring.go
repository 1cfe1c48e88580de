package seal

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"snapvisor/internal/fsx"
)

// keySize is the size of aes256-gcm keys.
const keySize = 32

// keyTimeLayout is the UTC time stamp in the ids of generated keys.
const keyTimeLayout = "20060102T150405Z"

// keyIDRE is the syntax of key ids (they are stored in file headers, at most 64 bytes).
var keyIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })

// keyMaterial is secret bytes that never print.
type keyMaterial []byte

func (keyMaterial) String() string   { return "[redacted]" }
func (keyMaterial) GoString() string { return "[redacted]" }

// Key is one aes256-gcm key of a keyring. Its material is unexported and
// never printed: fmt shows the id only.
type Key struct {
	ID       string    // stored in the header of every file it encrypts
	Created  time.Time // zero when the keyring line has no creation time
	material keyMaterial
}

// String returns the key id (never the material).
func (k Key) String() string { return k.ID }

// GoString returns the key id (never the material).
func (k Key) GoString() string { return "Key(" + k.ID + ")" }

// Keyring is an ordered list of keys: the last one encrypts, all decrypt.
//
// Text form, one key a line, blank lines and # comments ignored:
//
//	id:base64key
//	id:base64key:2025-01-02T03:04:05Z
//
// The optional third field is the key's creation time (RFC 3339); key
// rotation writes it for the keys it generates and stamps keys without one
// with the time it first sees them, since rotation counts from it.
type Keyring []Key

// ParseKeyring parses the text form. Errors name the line but never contain key material.
func ParseKeyring(text string) (Keyring, error) {
	var ring Keyring
	seen := map[string]bool{}
	text = string(trimBOM([]byte(text)))
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: not id:base64key", i+1)
		}
		id = strings.TrimSpace(id)
		if !keyIDRE().MatchString(id) {
			return nil, fmt.Errorf("line %d: key id %q: letters, digits, '.', '_' and '-' (at most 64, starting with a letter or digit)", i+1, shownID(id))
		}
		if seen[id] {
			return nil, fmt.Errorf("line %d: key id %q appears twice", i+1, shownID(id))
		}
		seen[id] = true
		keyText, created, hasTime := strings.Cut(rest, ":")
		material, err := decodeKey(keyText)
		if err != nil {
			return nil, fmt.Errorf("line %d (key id %s): %w", i+1, shownID(id), err)
		}
		k := Key{ID: id, material: material}
		if hasTime {
			t, err := time.Parse(time.RFC3339, strings.TrimSpace(created))
			// Format writes whole seconds in UTC: what it cannot write back is refused.
			if t = t.UTC().Truncate(time.Second); err == nil && (t.Year() < 0 || t.Year() > 9999) {
				err = errors.New("out of range")
			}
			if err != nil {
				return nil, fmt.Errorf("line %d (key id %s): creation time is not RFC 3339 (2025-01-02T03:04:05Z)", i+1, shownID(id))
			}
			k.Created = t
		}
		ring = append(ring, k)
	}
	return ring, nil
}

// shownID is a key id as errors show it: not at all when it, or a word of
// it, is a key (written in the wrong field, "id key" for "id:key"), since
// errors never contain key material.
func shownID(id string) string {
	fields := strings.FieldsFunc(id, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == ':' })
	for _, f := range append(fields, id) {
		if _, err := decodeKey(f); err == nil {
			return "(a key where the id belongs)"
		}
	}
	return id
}

// Format returns the text form of the keyring (it holds key material: write it to a 0600 file only).
func (r Keyring) Format() []byte {
	var b strings.Builder
	b.WriteString("# snapvisor aes256-gcm keyring: id:base64key[:created]; the last key encrypts, all decrypt.\n")
	for _, k := range r {
		b.WriteString(k.ID)
		b.WriteByte(':')
		b.WriteString(base64.StdEncoding.EncodeToString(k.material))
		if !k.Created.IsZero() {
			b.WriteByte(':')
			b.WriteString(k.Created.UTC().Format(time.RFC3339))
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Newest returns the key that encrypts (the last one).
func (r Keyring) Newest() (Key, bool) {
	if len(r) == 0 {
		return Key{}, false
	}
	return r[len(r)-1], true
}

// Lookup returns the key with the given id.
func (r Keyring) Lookup(id string) (Key, bool) {
	for _, k := range r {
		if k.ID == id {
			return k, true
		}
	}
	return Key{}, false
}

// IDs returns the key ids in keyring order.
func (r Keyring) IDs() []string {
	out := make([]string, len(r))
	for i, k := range r {
		out[i] = k.ID
	}
	return out
}

// singleKeyID is the key id of SNAPVISOR_ENCRYPTION_KEY: "key-" and 8 hex
// digits of a hash of the key (a fingerprint that reveals nothing usable).
func singleKeyID(material []byte) string {
	h := sha256.Sum256(append([]byte("snapvisor key id\x00"), material...))
	return "key-" + hex.EncodeToString(h[:4])
}

// RotationPlan is what PlanRotation decides.
type RotationPlan struct {
	Generate bool     // generate a key, append it and encrypt with it from now on
	Drop     []string // ids of replaced keys to remove from the keyring
	Stamp    []string // ids of keys without a creation time, to be given now as theirs
}

// Empty reports whether the plan changes nothing.
func (p RotationPlan) Empty() bool { return !p.Generate && len(p.Drop) == 0 && len(p.Stamp) == 0 }

// PlanRotation decides key rotation; it is pure (no clock, no files).
//
//   - An empty keyring gets a key.
//   - A key without a creation time is stamped with now (Stamp) and counts as created now.
//   - A new key is generated when the newest key is at least interval old at now.
//   - A replaced key (any but the newest) is retired at the creation time of
//     the key after it; it is dropped when it has been retired for at least
//     retention and no retained snapshot uses it (used holds the key ids of
//     the retained snapshots). The newest key is never dropped, nor a key
//     retired by a key generated in this plan.
//
// interval <= 0 means rotation is off: the plan is empty.
func PlanRotation(ring Keyring, now time.Time, interval, retention time.Duration, used map[string]bool) RotationPlan {
	var p RotationPlan
	if interval <= 0 {
		return p
	}
	if len(ring) == 0 {
		p.Generate = true
		return p
	}
	created := make([]time.Time, len(ring))
	for i, k := range ring {
		created[i] = k.Created
		if k.Created.IsZero() {
			p.Stamp = append(p.Stamp, k.ID)
			created[i] = now
		}
	}
	last := len(ring) - 1
	p.Generate = now.Sub(created[last]) >= interval
	for i := 0; i < last; i++ {
		retired := created[i+1]
		if now.Sub(retired) >= retention && !used[ring[i].ID] {
			p.Drop = append(p.Drop, ring[i].ID)
		}
	}
	return p
}

// apply returns the keyring after the plan, with newKey appended when the plan generates one.
func (p RotationPlan) apply(ring Keyring, now time.Time, newKey Key) Keyring {
	out := make(Keyring, 0, len(ring)+1)
	for _, k := range ring {
		if slices.Contains(p.Drop, k.ID) {
			continue
		}
		if slices.Contains(p.Stamp, k.ID) {
			k.Created = now.UTC()
		}
		out = append(out, k)
	}
	if p.Generate {
		out = append(out, newKey)
	}
	return out
}

// newKeyID returns an id for a key generated at now that is not in ring:
// key-<UTC YYYYMMDDTHHMMSSZ>, with -2, -3... when taken.
func newKeyID(ring Keyring, now time.Time) string {
	base := "key-" + now.UTC().Format(keyTimeLayout)
	id := base
	for n := 2; ; n++ {
		if _, taken := ring.Lookup(id); !taken {
			return id
		}
		id = fmt.Sprintf("%s-%d", base, n)
	}
}

// generateKey returns a fresh random key created at now.
func generateKey(ring Keyring, now time.Time) (Key, error) {
	b := make([]byte, keySize)
	if _, err := rand.Read(b); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key{ID: newKeyID(ring, now), Created: now.UTC(), material: b}, nil
}

// Rotates reports whether key rotation is on: SNAPVISOR_KEY_ROTATION set,
// with aes256-gcm and a keyring file to rewrite.
func (e Config) Rotates() bool {
	return e.Rotation.Duration() > 0 && e.KeysFile != "" && e.Effective() == AESGCM
}

// Rotation is what Rotate did to the keyring file.
type Rotation struct {
	RotationPlan
	File     string // the keyring file rewritten
	NewKey   string // the id of the generated key, "" when none
	Replaced string // the id of the key the new one replaces, "" when none
}

// Changed reports whether Rotate rewrote the keyring file.
func (r Rotation) Changed() bool { return !r.Empty() }

// Rotate applies key rotation to the keyring file at now when Rotates: stamps
// keys without a creation time, generates a new key when the newest is too
// old, and drops replaced keys past their retention that no snapshot uses.
// used holds the key ids the retained snapshots use, computed by the caller
// from its listing; nil means unknown, and then no key is dropped. The file
// is replaced atomically (mode 0600) before a new key is used. The result
// names key ids only.
func (e Config) Rotate(now time.Time, used map[string]bool) (Rotation, error) {
	if !e.Rotates() {
		return Rotation{}, nil
	}
	// Always the file as it is now, never a keyring read earlier: what is
	// written back must keep every key added since.
	ring, err := e.readKeyring()
	if err != nil {
		return Rotation{}, err
	}
	plan := PlanRotation(ring, now, e.Rotation.Duration(), e.OldKeysRetention.Duration(), used)
	if used == nil {
		plan.Drop = nil
	}
	if plan.Empty() {
		return Rotation{}, nil
	}
	r := Rotation{RotationPlan: plan, File: e.KeysFile}
	var newKey Key
	if plan.Generate {
		if newKey, err = generateKey(ring, now); err != nil {
			return Rotation{}, err
		}
		r.NewKey = newKey.ID
		if old, ok := ring.Newest(); ok {
			r.Replaced = old.ID
		}
	}
	if err := writeKeyringFile(e.KeysFile, plan.apply(ring, now, newKey)); err != nil {
		return Rotation{}, err
	}
	return r, nil
}

// writeKeyringFile replaces path with the keyring, atomically: a 0600
// temporary file in the same directory, fsynced, renamed over path, and the
// directory fsynced.
func writeKeyringFile(path string, ring Keyring) error {
	if err := fsx.WriteFile(path, ring.Format(), 0o600); err != nil {
		return fmt.Errorf("write keyring %s: %w", path, err)
	}
	return nil
}

// KeyState describes one configured aes256-gcm key (never its material).
type KeyState struct {
	ID      string
	Created time.Time // zero when unknown
	Current bool      // new files are encrypted with it
	// RotateAt is, for the current key with SNAPVISOR_KEY_ROTATION, when a new key replaces it (zero: unknown or off).
	RotateAt time.Time
	// DropAfter is, for a replaced keyring key with SNAPVISOR_KEY_ROTATION, the
	// earliest time it is dropped; it stays while a snapshot uses it.
	DropAfter time.Time
}

// KeyStates lists every aes256-gcm key configured: the keyring, then
// SNAPVISOR_ENCRYPTION_KEY.
func (e Config) KeyStates() ([]KeyState, error) {
	ring, err := e.gcmKeys()
	if err != nil {
		return nil, err
	}
	current := ""
	if k, err := e.currentGCMKey(); err == nil && e.Effective() == AESGCM {
		current = k.ID
	}
	keyring, _ := e.keyring()
	interval := time.Duration(0)
	if e.Rotates() {
		interval = e.Rotation.Duration()
	}
	out := make([]KeyState, 0, len(ring))
	for _, k := range ring {
		u := KeyState{ID: k.ID, Created: k.Created, Current: k.ID == current}
		if interval > 0 {
			if u.Current && !k.Created.IsZero() {
				u.RotateAt = k.Created.Add(interval)
			}
			for i, rk := range keyring {
				if rk.ID == k.ID && i+1 < len(keyring) && !keyring[i+1].Created.IsZero() {
					u.DropAfter = keyring[i+1].Created.Add(e.OldKeysRetention.Duration())
				}
			}
		}
		out = append(out, u)
	}
	return out, nil
}
