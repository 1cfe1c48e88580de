package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"snapvisor/config"
)

func TestParseKeyring(t *testing.T) {
	k1, k2 := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	t.Run("Valid", func(t *testing.T) {
		ring, err := ParseKeyring("# comment\n\n old-1:" + k1 + "\r\nnew.2:" + k2 + ":2025-01-02T04:04:05+01:00\n")
		must(t, err)
		if got := ring.IDs(); !slices.Equal(got, []string{"old-1", "new.2"}) {
			t.Fatalf("ids %v", got)
		}
		if !ring[0].Created.IsZero() || !ring[1].Created.Equal(t0) || ring[1].Created.Location() != time.UTC {
			t.Fatalf("created %v %v, want zero and %v", ring[0].Created, ring[1].Created, t0)
		}
		if k, _ := ring.Newest(); k.ID != "new.2" {
			t.Fatalf("newest %s", k.ID)
		}
		again, err := ParseKeyring(string(ring.Format()))
		must(t, err)
		if fmt.Sprint(again.IDs()) != fmt.Sprint(ring.IDs()) || !bytes.Equal(again[1].material, ring[1].material) || !again[1].Created.Equal(t0) {
			t.Fatal("Format does not round-trip")
		}
	})
	for _, tc := range []struct{ name, text, says string }{
		{"NoColon", "abc", "line 1: not id:base64key"},
		{"BadID", "-x:" + k1, "key id"},
		{"LongID", strings.Repeat("a", 65) + ":" + k1, "key id"},
		{"Duplicate", "a:" + k1 + "\na:" + k2, "appears twice"},
		{"NotBase64", "a:" + k1[:20] + "!!", "not valid base64"},
		{"Short", "a:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", "not 32"},
		{"BadTime", "a:" + k1 + ":yesterday", "RFC 3339"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyring(tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
			if strings.Contains(err.Error(), k1[:20]) || strings.Contains(err.Error(), k2[:20]) {
				t.Fatalf("the error reveals key material: %v", err)
			}
		})
	}
}

func TestPlanRotation(t *testing.T) {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	key := func(id string, ageDays float64) Key {
		k := Key{ID: id}
		if ageDays >= 0 {
			k.Created = now.Add(-time.Duration(ageDays * float64(day)))
		}
		return k
	}
	const none = -1 // no creation time
	interval, retention := 90*day, 7*day
	cases := []struct {
		name  string
		ring  Keyring
		used  []string
		want  RotationPlan
		inter time.Duration
	}{
		{"Off", Keyring{key("a", 500)}, nil, RotationPlan{}, -1},
		{"EmptyRingGetsAKey", nil, nil, RotationPlan{Generate: true}, 0},
		{"YoungKey", Keyring{key("a", 89)}, nil, RotationPlan{}, 0},
		{"DueExactly", Keyring{key("a", 90)}, nil, RotationPlan{Generate: true}, 0},
		{"Due", Keyring{key("a", 91)}, nil, RotationPlan{Generate: true}, 0},
		{"UnknownTimeIsStampedNotRotated", Keyring{key("a", none)}, nil, RotationPlan{Stamp: []string{"a"}}, 0},
		{"OldKeyWithinRetentionKept", Keyring{key("a", 100), key("b", 6)}, nil, RotationPlan{}, 0},
		{"OldKeyPastRetentionUnusedDropped", Keyring{key("a", 100), key("b", 7)}, nil, RotationPlan{Drop: []string{"a"}}, 0},
		{"OldKeyInUseKept", Keyring{key("a", 300), key("b", 30)}, []string{"a"}, RotationPlan{}, 0},
		{"RetentionCountsFromReplacement", Keyring{key("a", 400), key("b", 200), key("c", 5)}, nil, RotationPlan{Drop: []string{"a"}}, 0},
		{"ThreeKeysTwoDroppable", Keyring{key("a", 400), key("b", 200), key("c", 50)}, []string{"b"}, RotationPlan{Drop: []string{"a"}}, 0},
		{"NewestNeverDropped", Keyring{key("a", 400)}, nil, RotationPlan{Generate: true}, 0},
		{"ReplacementWithoutTime", Keyring{key("a", 400), key("b", none)}, nil, RotationPlan{Stamp: []string{"b"}}, 0},
		{"GenerateAndDrop", Keyring{key("a", 400), key("b", 100)}, nil, RotationPlan{Generate: true, Drop: []string{"a"}}, 0},
		{"FutureCreation", Keyring{key("a", 0).withCreated(now.Add(day))}, nil, RotationPlan{}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			iv := interval
			if tc.inter < 0 {
				iv = 0
			}
			used := map[string]bool{}
			for _, id := range tc.used {
				used[id] = true
			}
			got := PlanRotation(tc.ring, now, iv, retention, used)
			if got.Generate != tc.want.Generate || !slices.Equal(got.Drop, tc.want.Drop) || !slices.Equal(got.Stamp, tc.want.Stamp) {
				t.Fatalf("PlanRotation = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func (k Key) withCreated(t time.Time) Key { k.Created = t; return k }

// fakeClock is a settable clock for hooks.now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

// TestEncryption_RotationFakeClock runs key rotation across a fake clock:
// a first key is generated into an empty keyring file, replaced every 90
// days; snapshots under three keys all restore (also old ones after the
// rotation); a replaced key is dropped only when no snapshot uses it and its
// retention has passed.
func TestEncryption_RotationFakeClock(t *testing.T) {
	ctx := context.Background()
	day := 24 * time.Hour
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	want := model(t, src)
	secrets := t.TempDir()
	ringPath := filepath.Join(secrets, "keyring")
	must(t, os.WriteFile(ringPath, nil, 0o600))
	cfg := testConfig(t, CompressionGzip, src)
	cfg.Encryption = Encryption{Algorithm: EncryptionAESGCM, KeysFile: ringPath, Rotation: "90d", OldKeysRetention: "7d"}
	must(t, cfg.Validate())

	var logs bytes.Buffer
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zap.InfoLevel))
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	snap := func() Info {
		t.Helper()
		info, err := create(ctx, cfg, log, hooks{now: clock.now})
		must(t, err)
		return info
	}
	ids := func() []string {
		t.Helper()
		ring, err := cfg.Encryption.keyring()
		must(t, err)
		return ring.IDs()
	}
	keyOf := func(i Info) string {
		t.Helper()
		id, err := gcmKeyIDOf(i.Path)
		must(t, err)
		return id
	}
	restore := func(i Info) {
		t.Helper()
		must(t, Restore(ctx, cfg, i.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
		sameTree(t, want, model(t, src), false)
	}

	s1 := snap() // first key generated into the empty keyring
	k1 := ids()
	if len(k1) != 1 || keyOf(s1) != k1[0] || k1[0] != "key-20250101T000000Z" {
		t.Fatalf("after the first snapshot: keyring %v, snapshot key %s", k1, keyOf(s1))
	}
	fi, err := os.Stat(ringPath)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring mode %v, want 0600", fi.Mode().Perm())
	}
	clock.add(30 * day)
	s2 := snap()
	if keyOf(s2) != k1[0] || len(ids()) != 1 {
		t.Fatalf("a 30-day-old key was replaced: %v", ids())
	}
	clock.add(61 * day) // day 91: the first key is due
	s3 := snap()
	k2 := ids()
	if len(k2) != 2 || keyOf(s3) != k2[1] {
		t.Fatalf("day 91: keyring %v, snapshot key %s", k2, keyOf(s3))
	}
	clock.add(91 * day) // day 182
	s4 := snap()
	k3 := ids()
	if len(k3) != 3 || keyOf(s4) != k3[2] {
		t.Fatalf("day 182: keyring %v (the first key is used by two snapshots), snapshot key %s", k3, keyOf(s4))
	}
	// Snapshots under three keys all restore, the oldest too.
	for _, s := range []Info{s1, s2, s3, s4} {
		restore(s)
	}
	uses, err := KeyUsage(cfg.Encryption, cfg.Dir)
	must(t, err)
	if len(uses) != 3 || len(uses[0].Snapshots) != 2 || !uses[2].Current || uses[0].Current || uses[0].DropAfter.IsZero() {
		t.Fatalf("KeyUsage = %+v", uses)
	}

	// Retention deletes the first key's snapshots: the key goes at the next snapshot.
	for _, s := range []Info{s1, s2} {
		must(t, os.Remove(s.Path))
		must(t, os.Remove(s.Path+".sha256"))
	}
	clock.add(day)
	s5 := snap()
	if got := ids(); !slices.Equal(got, k3[1:]) {
		t.Fatalf("day 183: keyring %v, want %v (first key unused and replaced 92 days ago)", got, k3[1:])
	}
	// The second key is unused once s3 goes, but was replaced only 2 days ago.
	must(t, os.Remove(s3.Path))
	must(t, os.Remove(s3.Path+".sha256"))
	clock.add(day)
	snap()
	if got := ids(); !slices.Equal(got, k3[1:]) {
		t.Fatalf("day 184: keyring %v, want %v (second key within its 7-day retention)", got, k3[1:])
	}
	clock.add(6 * day) // day 190: 8 days after its replacement
	snap()
	if got := ids(); !slices.Equal(got, k3[2:]) {
		t.Fatalf("day 190: keyring %v, want %v", got, k3[2:])
	}
	restore(s4) // an older snapshot under the surviving key
	restore(s5)

	// The log names key ids, never key material.
	ring, err := cfg.Encryption.keyring()
	must(t, err)
	material := strings.TrimSpace(strings.SplitN(strings.Split(string(ring.Format()), "\n")[1], ":", 3)[1])
	if !strings.Contains(logs.String(), "new_key_id") || strings.Contains(logs.String(), material) {
		t.Fatalf("rotation log lacks the new key id or shows key material:\n%s", logs.String())
	}
}

// TestEncryption_RotationWithoutDirDropsNothing checks that Stream (no
// snapshot directory to prove a key unused) rotates but never drops a key.
func TestEncryption_RotationWithoutDirDropsNothing(t *testing.T) {
	ringPath := filepath.Join(t.TempDir(), "keyring")
	old := Keyring{{ID: "old", Created: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), material: make([]byte, 32)},
		{ID: "mid", Created: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), material: make([]byte, 32)}}
	must(t, writeKeyringFile(ringPath, old))
	e := Encryption{Algorithm: EncryptionAESGCM, KeysFile: ringPath, Rotation: "90d", OldKeysRetention: "7d"}
	must(t, e.rotateKeys("", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), zap.NewNop()))
	ring, err := e.keyring()
	must(t, err)
	if got := ring.IDs(); len(got) != 3 || got[0] != "old" || got[1] != "mid" {
		t.Fatalf("keyring %v, want old, mid and a new key", got)
	}
}

// TestEncryption_UnreadableKeyring checks that a keyring that cannot be read
// fails the snapshot with an error naming the variable (there is no key to use).
func TestEncryption_UnreadableKeyring(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	smallTree(t, src)
	cfg := testConfig(t, CompressionGzip, src)
	ringPath := filepath.Join(t.TempDir(), "keyring")
	must(t, os.WriteFile(ringPath, nil, 0o600))
	cfg.Encryption = Encryption{Algorithm: EncryptionAESGCM, KeysFile: ringPath, Rotation: "90d", OldKeysRetention: "7d"}
	must(t, cfg.Validate())
	must(t, os.Remove(ringPath)) // gone after start-up
	_, err := Create(context.Background(), cfg, testLogger(t))
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_ENCRYPTION_KEYS_FILE" {
		t.Fatalf("Create = %v, want an error naming SNAPVISOR_ENCRYPTION_KEYS_FILE", err)
	}
	if list, _ := List(cfg.Dir, ""); len(list) != 0 {
		t.Fatalf("a failed snapshot is listed: %v", list)
	}
}

// TestEncryption_Validate checks the configuration errors: each names its
// variable and never shows a secret value.
func TestEncryption_Validate(t *testing.T) {
	key := randomKey(t)
	ringFile := filepath.Join(t.TempDir(), "ring")
	must(t, os.WriteFile(ringFile, []byte("a:"+key+"\n"), 0o600))
	badRing := filepath.Join(t.TempDir(), "bad")
	must(t, os.WriteFile(badRing, []byte("a:"+key[:30]+"\n"), 0o600))
	ok := []Encryption{
		{},
		{Algorithm: EncryptionNone, Key: "restores old cbc snapshots"},
		{Algorithm: EncryptionAESGCM, Key: config.Secret(key)},
		{Algorithm: EncryptionAESGCM, Keys: config.Secret("a:" + key)},
		{Algorithm: EncryptionAESGCM, KeysFile: ringFile, Rotation: "90d", OldKeysRetention: "7d"},
		{Algorithm: EncryptionAESCBC, Key: "any passphrase"},
		{Algorithm: EncryptionAge, AgePassphrase: "p"},
		{Algorithm: EncryptionGPG, GPGPassphrase: "p"},
	}
	for i, e := range ok {
		if err := e.Validate(); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	bad := []struct {
		name  string
		e     Encryption
		varIs string
	}{
		{"Algorithm", Encryption{Algorithm: "rot13"}, "SNAPVISOR_ENCRYPTION"},
		{"GCMWithoutKey", Encryption{Algorithm: EncryptionAESGCM}, "SNAPVISOR_ENCRYPTION"},
		{"GCMShortKey", Encryption{Algorithm: EncryptionAESGCM, Key: config.Secret(key[:20])}, "SNAPVISOR_ENCRYPTION_KEY"},
		{"BadKeyring", Encryption{Algorithm: EncryptionAESGCM, Keys: config.Secret("a:" + key[:30])}, "SNAPVISOR_ENCRYPTION_KEYS"},
		{"BadKeyringFile", Encryption{Algorithm: EncryptionAESGCM, KeysFile: badRing}, "SNAPVISOR_ENCRYPTION_KEYS_FILE"},
		{"MissingKeyringFile", Encryption{Algorithm: EncryptionAESGCM, KeysFile: "/nonexistent/ring"}, "SNAPVISOR_ENCRYPTION_KEYS_FILE"},
		{"RotationSyntax", Encryption{Algorithm: EncryptionAESGCM, Key: config.Secret(key), Rotation: "quarterly"}, "SNAPVISOR_KEY_ROTATION"},
		{"RotationWithoutFile", Encryption{Algorithm: EncryptionAESGCM, Key: config.Secret(key), Rotation: "90d"}, "SNAPVISOR_KEY_ROTATION"},
		{"RotationNotGCM", Encryption{Algorithm: EncryptionAge, AgePassphrase: "p", KeysFile: ringFile, Rotation: "90d"}, "SNAPVISOR_KEY_ROTATION"},
		{"Retention", Encryption{Algorithm: EncryptionAESGCM, Key: config.Secret(key), OldKeysRetention: "-1d"}, "SNAPVISOR_OLD_KEYS_RETENTION"},
		{"CBCWithoutPassphrase", Encryption{Algorithm: EncryptionAESCBC}, "SNAPVISOR_ENCRYPTION"},
		{"CBCIterations", Encryption{Algorithm: EncryptionAESCBC, Key: "p", PBKDF2Iter: 10}, "SNAPVISOR_PBKDF2_ITER"},
		{"AgeNothing", Encryption{Algorithm: EncryptionAge}, "SNAPVISOR_ENCRYPTION"},
		{"AgeBadRecipient", Encryption{Algorithm: EncryptionAge, AgeRecipients: []string{"age1nope"}}, "SNAPVISOR_AGE_RECIPIENTS"},
		{"AgeMissingRecipientsFile", Encryption{Algorithm: EncryptionAge, AgeRecipientsFile: "/nonexistent"}, "SNAPVISOR_AGE_RECIPIENTS_FILE"},
		{"AgeBoth", Encryption{Algorithm: EncryptionAge, AgeRecipients: []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, AgePassphrase: "p"}, "SNAPVISOR_AGE_RECIPIENTS"},
		{"AgeBadIdentity", Encryption{AgeIdentity: "AGE-SECRET-KEY-1NOTAKEY"}, "SNAPVISOR_AGE_IDENTITY"},
		{"GPGNothing", Encryption{Algorithm: EncryptionGPG}, "SNAPVISOR_ENCRYPTION"},
		{"GPGMissingKeyring", Encryption{Algorithm: EncryptionGPG, GPGPublicKeyring: "/nonexistent.gpg"}, "SNAPVISOR_GPG_PUBLIC_KEYRING"},
		{"GPGBadSecretKeys", Encryption{GPGSecretKeyring: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnope\n-----END PGP PRIVATE KEY BLOCK-----\n"}, "SNAPVISOR_GPG_SECRET_KEYRING"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.Validate()
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Var != tc.varIs {
				t.Fatalf("Validate = %v, want a *config.Error for %s", err, tc.varIs)
			}
			if strings.Contains(err.Error(), key[:20]) || strings.Contains(err.Error(), "NOTAKEY") {
				t.Fatalf("the error shows a secret: %v", err)
			}
			// Config.Validate reports it too.
			cfg := Config{Sources: []string{"/srv/data"}, Dir: "/backups", Name: "s", Compression: CompressionGzip, Encryption: tc.e}
			if err := cfg.Validate(); !errors.As(err, &ce) || ce.Var != tc.varIs {
				t.Fatalf("Config.Validate = %v", err)
			}
		})
	}
}

// TestKey_NeverPrinted checks that fmt and the config's printers show key ids, never material.
func TestKey_NeverPrinted(t *testing.T) {
	key := randomKey(t)
	ring, err := ParseKeyring("main:" + key)
	must(t, err)
	e := Encryption{Algorithm: EncryptionAESGCM, Key: config.Secret(key), Keys: config.Secret("main:" + key)}
	b, _ := decodeKey(key)
	for _, s := range []string{fmt.Sprint(ring), fmt.Sprintf("%+v", ring), fmt.Sprintf("%#v", ring), fmt.Sprintf("%v %+v %#v", e, e, e), fmt.Sprintf("%+v", ring[0].material), fmt.Sprintf("%x", []byte(nil))} {
		if strings.Contains(s, key) || strings.Contains(s, fmt.Sprint(b)) || strings.Contains(s, fmt.Sprintf("%x", b)) {
			t.Fatalf("printed key material: %s", s)
		}
	}
}
