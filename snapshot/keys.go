package snapshot

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"snapvisor/seal"
)

// rotateKeys applies key rotation (seal.Config.Rotate) at now when it is on,
// with the key ids the snapshots in dir use; dir "" drops no key (the
// caller cannot tell which keys are needed). Logs ids only.
func rotateKeys(enc seal.Config, dir string, now time.Time, log *zap.Logger) error {
	if !enc.Rotates() {
		return nil
	}
	var used map[string]bool // nil: unknown, no key is dropped
	if dir != "" {
		u, err := keyIDsInUse(dir)
		if err != nil {
			log.Warn("key rotation: cannot tell which keys snapshots use; dropping no key", zap.Error(err))
		} else {
			used = u
		}
	}
	r, err := enc.Rotate(now, used)
	if err != nil || !r.Changed() {
		return err
	}
	fields := []zap.Field{zap.String("keyring", r.File), zap.Strings("dropped", r.Drop), zap.Strings("stamped", r.Stamp)}
	if r.Generate {
		fields = append(fields, zap.String("new_key_id", r.NewKey))
		if r.Replaced != "" {
			fields = append(fields, zap.String("replaced_key_id", r.Replaced))
		}
		log.Info("encryption key rotated: new snapshots use the new key", fields...)
	} else {
		log.Info("encryption keyring updated", fields...)
	}
	return nil
}

// keyIDsInUse returns the key ids of the aes256-gcm snapshots in dir (every name).
func keyIDsInUse(dir string) (map[string]bool, error) {
	list, err := List(dir, "")
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, s := range list {
		if s.Encryption != seal.AESGCM {
			continue
		}
		id, err := gcmKeyIDOf(s.Path)
		if err != nil {
			return nil, err
		}
		used[id] = true
	}
	return used, nil
}

// gcmKeyIDOf reads the key id from the header of an aes256-gcm file.
func gcmKeyIDOf(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	id, err := seal.KeyID(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, asCorrupt(err))
	}
	return id, nil
}

// KeyUse describes one key id: the keyring's keys (never their material) and
// the ids that snapshots name but the keyring lacks.
type KeyUse struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created,omitzero"` // zero when unknown
	Current bool      `json:"current"`          // new snapshots are encrypted with it
	Missing bool      `json:"missing"`          // snapshots use it but no configured key has this id
	// RotateAt is, for the current key with SNAPVISOR_KEY_ROTATION, when a new key replaces it (zero: unknown or off).
	RotateAt time.Time `json:"rotate_at,omitzero"`
	// DropAfter is, for a replaced keyring key with SNAPVISOR_KEY_ROTATION, the
	// earliest time it is dropped; it stays while a snapshot uses it.
	DropAfter time.Time `json:"drop_after,omitzero"`
	Snapshots []string  `json:"snapshots"` // snapshot names in dir encrypted with it, newest first
}

// KeyUsage lists every aes256-gcm key configured in enc (the keyring, then
// SNAPVISOR_ENCRYPTION_KEY) with the snapshots in dir (every name) that use
// it, followed by the key ids snapshots use that no configured key has.
func KeyUsage(enc seal.Config, dir string) ([]KeyUse, error) {
	states, err := enc.KeyStates()
	if err != nil {
		return nil, err
	}
	list, err := List(dir, "")
	if err != nil {
		return nil, err
	}
	var out []KeyUse
	index := map[string]int{}
	for _, k := range states {
		index[k.ID] = len(out)
		out = append(out, KeyUse{ID: k.ID, Created: k.Created, Current: k.Current, RotateAt: k.RotateAt, DropAfter: k.DropAfter, Snapshots: []string{}})
	}
	for _, s := range list {
		if s.Encryption != seal.AESGCM {
			continue
		}
		id, err := gcmKeyIDOf(s.Path)
		if err != nil {
			id = "(unreadable header)"
		}
		i, ok := index[id]
		if !ok {
			i = len(out)
			index[id] = i
			out = append(out, KeyUse{ID: id, Missing: true})
		}
		out[i].Snapshots = append(out[i].Snapshots, s.Name)
	}
	return out, nil
}
