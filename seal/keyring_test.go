package seal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"snapvisor/config"
	"snapvisor/internal/testutil"
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

// TestConfig_RotateUnknownUseDropsNothing checks that without the key ids in
// use (Stream: no snapshot directory to prove a key unused) Rotate rotates
// but never drops a key.
func TestConfig_RotateUnknownUseDropsNothing(t *testing.T) {
	ringPath := filepath.Join(t.TempDir(), "keyring")
	old := Keyring{{ID: "old", Created: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), material: make([]byte, 32)},
		{ID: "mid", Created: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC), material: make([]byte, 32)}}
	must(t, writeKeyringFile(ringPath, old))
	e := Config{Algorithm: AESGCM, KeysFile: ringPath, Rotation: config.NewAge("90d"), OldKeysRetention: config.NewAge("7d")}
	r, err := e.Rotate(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), nil)
	must(t, err)
	if !r.Generate || len(r.Drop) != 0 || r.Replaced != "mid" || r.NewKey == "" {
		t.Fatalf("Rotate = %+v, want a new key replacing mid and nothing dropped", r)
	}
	ring, err := e.keyring()
	must(t, err)
	if got := ring.IDs(); len(got) != 3 || got[0] != "old" || got[1] != "mid" {
		t.Fatalf("keyring %v, want old, mid and a new key", got)
	}
}

// TestConfig_Validate checks the configuration errors: each names its
// variable and never shows a secret value.
func TestConfig_Validate(t *testing.T) {
	key := testutil.RandomKey(t)
	ringFile := filepath.Join(t.TempDir(), "ring")
	must(t, os.WriteFile(ringFile, []byte("a:"+key+"\n"), 0o600))
	badRing := filepath.Join(t.TempDir(), "bad")
	must(t, os.WriteFile(badRing, []byte("a:"+key[:30]+"\n"), 0o600))
	ok := []Config{
		{},
		{Algorithm: None, Key: "restores old cbc snapshots"},
		{Algorithm: AESGCM, Key: config.Secret(key)},
		{Algorithm: AESGCM, Keys: config.Secret("a:" + key)},
		{Algorithm: AESGCM, KeysFile: ringFile, Rotation: config.NewAge("90d"), OldKeysRetention: config.NewAge("7d")},
		{Algorithm: AESCBC, Key: "any passphrase"},
		{Algorithm: Age, AgePassphrase: "p"},
		{Algorithm: GPG, GPGPassphrase: "p"},
	}
	for i, e := range ok {
		if err := e.Validate(); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
	bad := []struct {
		name  string
		e     Config
		varIs string
	}{
		{"Algorithm", Config{Algorithm: "rot13"}, "SNAPVISOR_ENCRYPTION"},
		{"GCMWithoutKey", Config{Algorithm: AESGCM}, "SNAPVISOR_ENCRYPTION"},
		{"GCMShortKey", Config{Algorithm: AESGCM, Key: config.Secret(key[:20])}, "SNAPVISOR_ENCRYPTION_KEY"},
		{"BadKeyring", Config{Algorithm: AESGCM, Keys: config.Secret("a:" + key[:30])}, "SNAPVISOR_ENCRYPTION_KEYS"},
		{"BadKeyringFile", Config{Algorithm: AESGCM, KeysFile: badRing}, "SNAPVISOR_ENCRYPTION_KEYS_FILE"},
		{"MissingKeyringFile", Config{Algorithm: AESGCM, KeysFile: "/nonexistent/ring"}, "SNAPVISOR_ENCRYPTION_KEYS_FILE"},
		{"RotationSyntax", Config{Algorithm: AESGCM, Key: config.Secret(key), Rotation: config.NewAge("quarterly")}, "SNAPVISOR_KEY_ROTATION"},
		{"RotationWithoutFile", Config{Algorithm: AESGCM, Key: config.Secret(key), Rotation: config.NewAge("90d")}, "SNAPVISOR_KEY_ROTATION"},
		{"RotationNotGCM", Config{Algorithm: Age, AgePassphrase: "p", KeysFile: ringFile, Rotation: config.NewAge("90d")}, "SNAPVISOR_KEY_ROTATION"},
		{"Retention", Config{Algorithm: AESGCM, Key: config.Secret(key), OldKeysRetention: config.NewAge("-1d")}, "SNAPVISOR_OLD_KEYS_RETENTION"},
		{"CBCWithoutPassphrase", Config{Algorithm: AESCBC}, "SNAPVISOR_ENCRYPTION"},
		{"CBCIterations", Config{Algorithm: AESCBC, Key: "p", PBKDF2Iter: 10}, "SNAPVISOR_PBKDF2_ITER"},
		{"AgeNothing", Config{Algorithm: Age}, "SNAPVISOR_ENCRYPTION"},
		{"AgeBadRecipient", Config{Algorithm: Age, AgeRecipients: []string{"age1nope"}}, "SNAPVISOR_AGE_RECIPIENTS"},
		{"AgeMissingRecipientsFile", Config{Algorithm: Age, AgeRecipientsFile: "/nonexistent"}, "SNAPVISOR_AGE_RECIPIENTS_FILE"},
		{"AgeBoth", Config{Algorithm: Age, AgeRecipients: []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}, AgePassphrase: "p"}, "SNAPVISOR_AGE_RECIPIENTS"},
		{"AgeBadIdentity", Config{AgeIdentity: "AGE-SECRET-KEY-1NOTAKEY"}, "SNAPVISOR_AGE_IDENTITY"},
		{"GPGNothing", Config{Algorithm: GPG}, "SNAPVISOR_ENCRYPTION"},
		{"GPGMissingKeyring", Config{Algorithm: GPG, GPGPublicKeyring: "/nonexistent.gpg"}, "SNAPVISOR_GPG_PUBLIC_KEYRING"},
		{"GPGBadSecretKeys", Config{GPGSecretKeyring: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnope\n-----END PGP PRIVATE KEY BLOCK-----\n"}, "SNAPVISOR_GPG_SECRET_KEYRING"},
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
		})
	}
}

// TestKey_NeverPrinted checks that fmt and the config's printers show key ids, never material.
func TestKey_NeverPrinted(t *testing.T) {
	key := testutil.RandomKey(t)
	ring, err := ParseKeyring("main:" + key)
	must(t, err)
	e := Config{Algorithm: AESGCM, Key: config.Secret(key), Keys: config.Secret("main:" + key)}
	b, _ := decodeKey(key)
	for _, s := range []string{fmt.Sprint(ring), fmt.Sprintf("%+v", ring), fmt.Sprintf("%#v", ring), fmt.Sprintf("%v %+v %#v", e, e, e), fmt.Sprintf("%+v", ring[0].material), fmt.Sprintf("%x", []byte(nil))} {
		if strings.Contains(s, key) || strings.Contains(s, fmt.Sprint(b)) || strings.Contains(s, fmt.Sprintf("%x", b)) {
			t.Fatalf("printed key material: %s", s)
		}
	}
}

// must fails the test on error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
