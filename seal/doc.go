// Package seal encrypts and decrypts snapshot files at rest, and keeps the
// aes256-gcm keyring (key rotation). It knows nothing of archives or
// snapshot directories: the snapshot pipeline is
//
//	tar -> compressor -> bufio -> seal.NewWriter -> sha256 + destination
//
// so the .sha256 covers the stored, encrypted bytes, and reading is the
// reverse: the checksum of the file, then seal.NewReader, then
// decompression. The algorithm of a file is named by the last suffix of its
// name (Suffix, FromSuffix); Sniff recognises it from the first bytes.
//
// # aes256-gcm file format (suffix .aes256gcm)
//
//	magic    19 bytes "SNAPVISOR-AES256GCM"
//	version   1 byte  1
//	idlen     1 byte  length of the key id (1-64)
//	keyid    idlen bytes, the id of the keyring key (ASCII)
//	salt     32 bytes, random per file
//	mac      32 bytes, HMAC-SHA256 over everything above, keyed with
//	         HKDF-SHA256(key, salt, "snapvisor aes256-gcm v1 header")
//	payload  a DARE 2.0 stream (github.com/minio/sio), AES-256-GCM, keyed with
//	         HKDF-SHA256(key, salt, "snapvisor aes256-gcm v1 payload")
//
// DARE 2.0 cuts the stream into packages of 64 KiB of plaintext, each sealed
// with a nonce made of a per-stream random value, the package's sequence
// number and a final-package flag (also in the authenticated package
// header): a modified, reordered, dropped, truncated or extended stream
// fails authentication. Memory is one package. The header MAC tells a wrong
// key (or a modified header) apart from damage in the payload.
//
// # aes256-cbc (suffix .aes256cbc)
//
// Exactly what `openssl enc -aes-256-cbc -pbkdf2 -iter N -pass ...` writes:
// "Salted__", 8 random bytes of salt, then AES-256-CBC with PKCS#7 padding,
// key and IV the 48 bytes of PBKDF2-HMAC-SHA256(passphrase, salt, N). It has
// no integrity of its own: only the .sha256 detects changes.
//
// # age (.age) and gpg (.gpg)
//
// The standard formats, written by filippo.io/age and ProtonMail/go-crypto
// (OpenPGP: AES-256, SEIPD with MDC, no compression packet).
//
// # Errors
//
// Damage found while decrypting (a bad header, failed authentication,
// truncation) wraps ErrDamaged; missing or wrong credentials wrap ErrKey;
// configuration errors are *config.Error values naming the variable. Errors
// never contain key material.
package seal
