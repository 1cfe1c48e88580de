package snapshot

// Encryption at rest. The snapshot pipeline is
//
//	tar -> compressor -> bufio -> encrypter -> sha256 + destination
//
// so the .sha256 covers the stored, encrypted bytes, and reading is the
// reverse: the checksum of the file, then decryption, then decompression.
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

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/minio/sio"
)

// ErrKey is wrapped by errors reporting that a snapshot cannot be decrypted
// with the configured credentials: none configured for its algorithm, its key
// id unknown, or the key, identity or passphrase wrong.
var ErrKey = errors.New("wrong or missing decryption key")

const (
	gcmMagic        = "SNAPVISOR-AES256GCM"
	gcmVersion      = 1
	gcmSaltSize     = 32
	gcmMACSize      = sha256.Size
	gcmInfoHeader   = "snapvisor aes256-gcm v1 header"
	gcmInfoPayload  = "snapvisor aes256-gcm v1 payload"
	cbcMagic        = "Salted__"
	cbcSaltSize     = 8
	cbcChunk        = 64 << 10
	ageMagic        = "age-encryption.org/v1\n"
	maxGCMHeaderLen = len(gcmMagic) + 2 + 64 + gcmSaltSize + gcmMACSize
)

// suffixEncryption returns the algorithm whose suffix ends base, "" for none.
func suffixEncryption(base string) string {
	for alg, suf := range encryptionSuffixes {
		if strings.HasSuffix(base, suf) {
			return alg
		}
	}
	return ""
}

// sniffEncryption names the encryption whose magic starts head, "" when none matches.
func sniffEncryption(head []byte) string {
	s := string(head)
	switch {
	case strings.HasPrefix(s, gcmMagic):
		return EncryptionAESGCM
	case strings.HasPrefix(s, ageMagic):
		return EncryptionAge
	case strings.HasPrefix(s, cbcMagic):
		return EncryptionAESCBC
	case len(head) > 0 && isPGPEncryptedStart(head[0]):
		return EncryptionGPG
	}
	return ""
}

// isPGPEncryptedStart reports whether b is the first byte of an OpenPGP
// public-key (tag 1) or symmetric-key (tag 3) encrypted session key packet.
func isPGPEncryptedStart(b byte) bool {
	if b&0x80 == 0 {
		return false
	}
	var tag byte
	if b&0x40 != 0 {
		tag = b & 0x3f
	} else {
		tag = (b >> 2) & 0x0f
	}
	return tag == 1 || tag == 3
}

// nopCloseWriter hides a Close method of the destination from library writers that would call it.
type nopCloseWriter struct{ io.Writer }

// encryptTo returns the writer that encrypts into w with the configured
// algorithm (w itself for none) and finish, which completes the stream
// (last chunk, padding, MDC) and must be called after the last write.
// Encryption runs on the goroutine that writes (the compressor's output
// goroutine): a separate stage measured no faster on two cores and costs
// memory.
func (e Encryption) encryptTo(w io.Writer) (io.Writer, func() error, error) {
	w = nopCloseWriter{w}
	var wc io.WriteCloser
	var err error
	switch e.algorithm() {
	case EncryptionNone:
		return w, func() error { return nil }, nil
	case EncryptionAESGCM:
		var k Key
		if k, err = e.currentGCMKey(); err == nil {
			wc, err = encryptGCM(w, k)
		}
	case EncryptionAESCBC:
		if e.Key == "" {
			return nil, nil, fmt.Errorf("%w: aes256-cbc needs a passphrase in SNAPVISOR_ENCRYPTION_KEY", ErrKey)
		}
		wc, err = encryptCBC(w, e.Key.Reveal(), e.pbkdf2Iter())
	case EncryptionAge:
		wc, err = e.encryptAge(w)
	case EncryptionGPG:
		wc, err = e.encryptGPG(w)
	default:
		return nil, nil, fmt.Errorf("unknown encryption %q", e.Algorithm)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("encrypt (%s): %w", e.algorithm(), err)
	}
	return wc, func() error {
		if err := wc.Close(); err != nil {
			return fmt.Errorf("encrypt (%s): %w", e.algorithm(), err)
		}
		return nil
	}, nil
}

// decrypt returns the plaintext of r, a file encrypted with algorithm.
// Errors reading the header or finding the key are returned here (wrapping
// ErrKey or ErrCorrupt); damage found later surfaces from Read as an error
// wrapping ErrCorrupt.
func (e Encryption) decrypt(r io.Reader, algorithm string) (io.Reader, error) {
	var pr io.Reader
	var err error
	switch algorithm {
	case EncryptionAESGCM:
		pr, err = e.decryptGCM(r)
	case EncryptionAESCBC:
		if e.Key == "" {
			return nil, fmt.Errorf("%w: the snapshot is aes256-cbc encrypted and SNAPVISOR_ENCRYPTION_KEY (its passphrase) is not set", ErrKey)
		}
		pr, err = decryptCBC(r, e.Key.Reveal(), e.pbkdf2Iter())
	case EncryptionAge:
		pr, err = e.decryptAge(r)
	case EncryptionGPG:
		pr, err = e.decryptGPG(r)
	default:
		return nil, fmt.Errorf("unknown encryption %q", algorithm)
	}
	if err != nil {
		return nil, err
	}
	return &decryptErrReader{alg: algorithm, r: pr}, nil
}

// decryptErrReader marks errors of the decrypting reader as corruption (authentication failures, truncation).
type decryptErrReader struct {
	alg string
	r   io.Reader
}

func (d *decryptErrReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrKey) {
		err = fmt.Errorf("%w: %s decryption: %v (the file was modified, truncated or reordered)", ErrCorrupt, d.alg, err)
	}
	return n, err
}

// --- aes256-gcm ---

type gcmHeader struct {
	keyID  string
	salt   []byte
	mac    []byte
	signed []byte // the header bytes the mac covers
}

func gcmDerive(k Key, salt []byte, info string) []byte {
	b, err := hkdf.Key(sha256.New, k.material, salt, info, keySize)
	if err != nil { // only for impossible lengths
		panic(err)
	}
	return b
}

func gcmHeaderMAC(k Key, h gcmHeader) []byte {
	m := hmac.New(sha256.New, gcmDerive(k, h.salt, gcmInfoHeader))
	m.Write(h.signed)
	return m.Sum(nil)
}

func sioConfig(key []byte) sio.Config {
	return sio.Config{MinVersion: sio.Version20, MaxVersion: sio.Version20, CipherSuites: []byte{sio.AES_256_GCM}, Key: key}
}

func encryptGCM(w io.Writer, k Key) (io.WriteCloser, error) {
	if len(k.ID) == 0 || len(k.ID) > 64 {
		return nil, fmt.Errorf("key id %q: 1 to 64 bytes", k.ID)
	}
	salt := make([]byte, gcmSaltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	signed := make([]byte, 0, maxGCMHeaderLen)
	signed = append(signed, gcmMagic...)
	signed = append(signed, gcmVersion, byte(len(k.ID)))
	signed = append(signed, k.ID...)
	signed = append(signed, salt...)
	h := gcmHeader{keyID: k.ID, salt: salt, signed: signed}
	if _, err := w.Write(append(signed, gcmHeaderMAC(k, h)...)); err != nil {
		return nil, err
	}
	return sio.EncryptWriter(w, sioConfig(gcmDerive(k, salt, gcmInfoPayload)))
}

// readGCMHeader reads and parses the header of an aes256-gcm file (without checking its MAC).
func readGCMHeader(r io.Reader) (gcmHeader, error) {
	fixed := make([]byte, len(gcmMagic)+2)
	if _, err := io.ReadFull(r, fixed); err != nil || string(fixed[:len(gcmMagic)]) != gcmMagic {
		return gcmHeader{}, fmt.Errorf("%w: not a snapvisor aes256-gcm file (bad magic)", ErrCorrupt)
	}
	if v := fixed[len(gcmMagic)]; v != gcmVersion {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm format version %d is not supported (this snapvisor reads version %d)", ErrCorrupt, v, gcmVersion)
	}
	idLen := int(fixed[len(gcmMagic)+1])
	if idLen == 0 || idLen > 64 {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm header: bad key id length %d", ErrCorrupt, idLen)
	}
	rest := make([]byte, idLen+gcmSaltSize+gcmMACSize)
	if _, err := io.ReadFull(r, rest); err != nil {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm header truncated", ErrCorrupt)
	}
	id := string(rest[:idLen])
	if !keyIDRE.MatchString(id) {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm header: malformed key id", ErrCorrupt)
	}
	signed := append(fixed, rest[:idLen+gcmSaltSize]...)
	return gcmHeader{keyID: id, salt: rest[idLen : idLen+gcmSaltSize], mac: rest[idLen+gcmSaltSize:], signed: signed}, nil
}

func (e Encryption) decryptGCM(r io.Reader) (io.Reader, error) {
	h, err := readGCMHeader(r)
	if err != nil {
		return nil, err
	}
	ring, err := e.gcmKeys()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	k, ok := ring.Lookup(h.keyID)
	if !ok {
		have := "no aes256-gcm key is configured"
		if len(ring) > 0 {
			have = "configured key ids: " + strings.Join(ring.IDs(), ", ")
		}
		return nil, fmt.Errorf("%w: the snapshot is aes256-gcm encrypted with key id %q, which is not configured (%s): set the key with this id in SNAPVISOR_ENCRYPTION_KEYS (or as SNAPVISOR_ENCRYPTION_KEY)", ErrKey, h.keyID, have)
	}
	if !hmac.Equal(gcmHeaderMAC(k, h), h.mac) {
		return nil, fmt.Errorf("%w: the configured key with id %q is not the key this aes256-gcm snapshot was encrypted with (or its header was modified)", ErrKey, h.keyID)
	}
	return sio.DecryptReader(r, sioConfig(gcmDerive(k, h.salt, gcmInfoPayload)))
}

// --- aes256-cbc, openssl enc compatible ---

func cbcKeyIV(pass string, salt []byte, iter int) (key, iv []byte, err error) {
	b, err := pbkdf2.Key(sha256.New, pass, salt, iter, 32+aes.BlockSize)
	if err != nil {
		return nil, nil, err
	}
	return b[:32], b[32:], nil
}

type cbcWriter struct {
	w       io.Writer
	mode    cipher.BlockMode
	pending []byte // plaintext not yet a whole block
	buf     []byte
}

func encryptCBC(w io.Writer, pass string, iter int) (io.WriteCloser, error) {
	salt := make([]byte, cbcSaltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	key, iv, err := cbcKeyIV(pass, salt, iter)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(append([]byte(cbcMagic), salt...)); err != nil {
		return nil, err
	}
	return &cbcWriter{w: w, mode: cipher.NewCBCEncrypter(block, iv), pending: make([]byte, 0, aes.BlockSize)}, nil
}

func (c *cbcWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(c.pending) > 0 {
		k := copy(c.pending[len(c.pending):aes.BlockSize], p)
		c.pending = c.pending[:len(c.pending)+k]
		p = p[k:]
		if len(c.pending) < aes.BlockSize {
			return n, nil
		}
		c.mode.CryptBlocks(c.pending, c.pending)
		if _, err := c.w.Write(c.pending); err != nil {
			return 0, err
		}
		c.pending = c.pending[:0]
	}
	whole := len(p) - len(p)%aes.BlockSize
	for whole > 0 {
		m := min(whole, cbcChunk)
		if cap(c.buf) < m {
			c.buf = make([]byte, cbcChunk)
		}
		out := c.buf[:m]
		c.mode.CryptBlocks(out, p[:m])
		if _, err := c.w.Write(out); err != nil {
			return 0, err
		}
		p, whole = p[m:], whole-m
	}
	c.pending = append(c.pending, p...)
	return n, nil
}

// Close writes the last block with PKCS#7 padding.
func (c *cbcWriter) Close() error {
	pad := aes.BlockSize - len(c.pending)
	last := append(c.pending, make([]byte, pad)...)
	for i := len(c.pending); i < aes.BlockSize; i++ {
		last[i] = byte(pad)
	}
	c.mode.CryptBlocks(last, last)
	_, err := c.w.Write(last)
	return err
}

type cbcReader struct {
	r    io.Reader
	mode cipher.BlockMode
	buf  []byte // ciphertext; buf[:held] is the last block, not yet decrypted
	held int
	out  []byte // plaintext ready to return
	err  error
}

func decryptCBC(r io.Reader, pass string, iter int) (io.Reader, error) {
	head := make([]byte, len(cbcMagic)+cbcSaltSize)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(cbcMagic)]) != cbcMagic {
		return nil, fmt.Errorf("%w: not an openssl enc file (no Salted__ header)", ErrCorrupt)
	}
	key, iv, err := cbcKeyIV(pass, head[len(cbcMagic):], iter)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &cbcReader{r: r, mode: cipher.NewCBCDecrypter(block, iv), buf: make([]byte, cbcChunk+aes.BlockSize)}, nil
}

func (c *cbcReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.fill()
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// fill decrypts the next chunk into out, holding back the last block until
// the end of the input is known (it carries the padding).
func (c *cbcReader) fill() {
	n, err := io.ReadFull(c.r, c.buf[c.held:])
	total := c.held + n
	switch {
	case err == nil:
		// More may follow: decrypt all but the last whole block.
		keep := aes.BlockSize + total%aes.BlockSize
		dec := total - keep
		c.mode.CryptBlocks(c.buf[:dec], c.buf[:dec])
		c.out = append(c.out[:0], c.buf[:dec]...)
		copy(c.buf, c.buf[dec:total])
		c.held = keep
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if total == 0 || total%aes.BlockSize != 0 {
			c.err = fmt.Errorf("%w: aes256-cbc: the file is truncated (%d bytes, not whole blocks)", ErrCorrupt, total)
			return
		}
		c.mode.CryptBlocks(c.buf[:total], c.buf[:total])
		pad := int(c.buf[total-1])
		if pad < 1 || pad > aes.BlockSize {
			c.err = fmt.Errorf("%w: aes256-cbc: bad padding: wrong passphrase (SNAPVISOR_ENCRYPTION_KEY), iteration count (SNAPVISOR_PBKDF2_ITER), or a damaged file", ErrKey)
			return
		}
		for _, b := range c.buf[total-pad : total] {
			if int(b) != pad {
				c.err = fmt.Errorf("%w: aes256-cbc: bad padding: wrong passphrase (SNAPVISOR_ENCRYPTION_KEY), iteration count (SNAPVISOR_PBKDF2_ITER), or a damaged file", ErrKey)
				return
			}
		}
		c.out = append(c.out[:0], c.buf[:total-pad]...)
		c.held = 0
		c.err = io.EOF
	default:
		c.err = err
	}
}

// peekPlain checks, for algorithms without authentication (aes256-cbc), that
// the decrypted stream starts like the compression the name announces; a
// mismatch means a wrong passphrase far more often than damage.
func peekPlain(br *bufio.Reader, algorithm, compression string) error {
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if algorithm != EncryptionAESCBC {
		return nil
	}
	ok := false
	switch compression {
	case CompressionGzip:
		ok = strings.HasPrefix(string(head), gzipMagic)
	case CompressionZstd:
		ok = strings.HasPrefix(string(head), zstdMagic)
	default:
		ok = len(head) >= 512 && string(head[257:262]) == "ustar"
	}
	if !ok {
		return fmt.Errorf("%w: aes256-cbc: the decrypted data is not %s: wrong passphrase (SNAPVISOR_ENCRYPTION_KEY) or iteration count (SNAPVISOR_PBKDF2_ITER)", ErrKey, compressionWord(compression))
	}
	return nil
}

func compressionWord(c string) string {
	switch c {
	case CompressionGzip:
		return "a gzip stream"
	case CompressionZstd:
		return "a zstd stream"
	}
	return "a tar archive"
}
