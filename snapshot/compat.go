package snapshot

import (
	"time"

	"snapvisor/seal"
)

// Old spellings of name.go's functions, kept until their callers outside
// this package (store/snapshots.go, jobs/push.go, store's tests) switch to
// Name, ParseFileName, ParseSum and Config.NameAt; then this file goes.

// ParseName splits a snapshot file name as ParseFileName does.
//
// Deprecated: use ParseFileName.
func ParseName(base string) (name string, t time.Time, compression string, ok bool) {
	n, ok := ParseFileName(base)
	return n.Prefix, n.Time, n.Compression, ok
}

// ParseChecksum parses the content of a checksum file.
//
// Deprecated: use ParseSum.
func ParseChecksum(b []byte, base string) (string, error) { return ParseSum(b, base) }

// FileName is the snapshot file name for cfg at time t.
//
// Deprecated: use cfg.NameAt(t).String().
func FileName(cfg Config, t time.Time) string { return cfg.NameAt(t).String() }

// EncryptionOf returns the encryption a file name announces by its last
// suffix (seal.FromSuffix), seal.None when none.
//
// Deprecated: use ParseFileName's Name.Encryption.
func EncryptionOf(base string) string { return seal.FromSuffix(base) }
