package seal

import (
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

// ErrDamaged is wrapped by errors reporting an encrypted file that does not
// decrypt: a bad header, failed authentication, truncation, a foreign file.
// Its words are snapshot.ErrDamaged's, which wraps it, so that messages read
// the same through either.
var ErrDamaged = errors.New("corrupt, truncated or foreign archive")

// Algorithms accepted in Config.Algorithm (SNAPVISOR_ENCRYPTION).
const (
	None   = "none"
	AESGCM = "aes256-gcm"
	Age    = "age"
	GPG    = "gpg"
	AESCBC = "aes256-cbc"
)

// suffixes maps each algorithm to the file name suffix that follows the
// compression suffix (snapshot-<time>.tar.gz.aes256gcm).
var suffixes = map[string]string{
	AESGCM: ".aes256gcm",
	Age:    ".age",
	GPG:    ".gpg",
	AESCBC: ".aes256cbc",
}

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

// Suffix returns the file name suffix of algorithm (".aes256gcm", ".age",
// ".gpg", ".aes256cbc"); "" for none, "" and any other value.
func Suffix(algorithm string) string { return suffixes[algorithm] }

// FromSuffix returns the algorithm whose suffix ends the file name base,
// None when no suffix does.
func FromSuffix(base string) string {
	for alg, suf := range suffixes {
		if strings.HasSuffix(base, suf) {
			return alg
		}
	}
	return None
}

// Sniff names the algorithm whose magic starts head, "" when none matches
// (an OpenPGP file is recognised by its first packet, so a few other byte
// values match gpg too: callers check compression magics first).
func Sniff(head []byte) string {
	s := string(head)
	switch {
	case strings.HasPrefix(s, gcmMagic):
		return AESGCM
	case strings.HasPrefix(s, ageMagic):
		return Age
	case strings.HasPrefix(s, cbcMagic):
		return AESCBC
	case len(head) > 0 && isPGPEncryptedStart(head[0]):
		return GPG
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

func (nopCloseWriter) Close() error { return nil }

// NewWriter returns the writer that encrypts into w with c's algorithm (a
// pass-through for none). Its Close completes the stream (last chunk,
// padding, MDC) and must be called after the last write; it never closes w.
// Encryption runs on the goroutine that writes (the compressor's output
// goroutine): a separate stage measured no faster on two cores and costs
// memory.
func NewWriter(w io.Writer, c Config) (io.WriteCloser, error) {
	nw := nopCloseWriter{w}
	var wc io.WriteCloser
	var err error
	switch c.Effective() {
	case None:
		return nw, nil
	case AESGCM:
		var k Key
		if k, err = c.currentGCMKey(); err == nil {
			wc, err = encryptGCM(nw, k)
		}
	case AESCBC:
		if c.Key == "" {
			return nil, fmt.Errorf("%w: aes256-cbc needs a passphrase in SNAPVISOR_ENCRYPTION_KEY", ErrKey)
		}
		wc, err = encryptCBC(nw, c.Key.Reveal(), c.pbkdf2Iter())
	case Age:
		wc, err = c.encryptAge(nw)
	case GPG:
		wc, err = c.encryptGPG(nw)
	default:
		return nil, fmt.Errorf("unknown encryption %q", c.Algorithm)
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt (%s): %w", c.Effective(), err)
	}
	return &finishWriter{WriteCloser: wc, alg: c.Effective()}, nil
}

// finishWriter names the algorithm in the error of Close.
type finishWriter struct {
	io.WriteCloser
	alg string
}

func (f *finishWriter) Close() error {
	if err := f.WriteCloser.Close(); err != nil {
		return fmt.Errorf("encrypt (%s): %w", f.alg, err)
	}
	return nil
}

// NewReader returns the plaintext of r, a file encrypted with algorithm,
// decrypted with every credential of c (whatever c.Algorithm says). Errors
// reading the header or finding the key are returned here (wrapping ErrKey
// or ErrDamaged); damage found later surfaces from Read as an error wrapping
// ErrDamaged.
func NewReader(r io.Reader, algorithm string, c Config) (io.Reader, error) {
	var pr io.Reader
	var err error
	switch algorithm {
	case AESGCM:
		pr, err = c.decryptGCM(r)
	case AESCBC:
		if c.Key == "" {
			return nil, fmt.Errorf("%w: the snapshot is aes256-cbc encrypted and SNAPVISOR_ENCRYPTION_KEY (its passphrase) is not set", ErrKey)
		}
		pr, err = decryptCBC(r, c.Key.Reveal(), c.pbkdf2Iter())
	case Age:
		pr, err = c.decryptAge(r)
	case GPG:
		pr, err = c.decryptGPG(r)
	default:
		return nil, fmt.Errorf("unknown encryption %q", algorithm)
	}
	if err != nil {
		return nil, err
	}
	return &decryptErrReader{alg: algorithm, r: pr}, nil
}

// decryptErrReader marks errors of the decrypting reader as damage (authentication failures, truncation).
type decryptErrReader struct {
	alg string
	r   io.Reader
}

func (d *decryptErrReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrKey) {
		err = fmt.Errorf("%w: %s decryption: %v (the file was modified, truncated or reordered)", ErrDamaged, d.alg, err)
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
		return gcmHeader{}, fmt.Errorf("%w: not a snapvisor aes256-gcm file (bad magic)", ErrDamaged)
	}
	if v := fixed[len(gcmMagic)]; v != gcmVersion {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm format version %d is not supported (this snapvisor reads version %d)", ErrDamaged, v, gcmVersion)
	}
	idLen := int(fixed[len(gcmMagic)+1])
	if idLen == 0 || idLen > 64 {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm header: bad key id length %d", ErrDamaged, idLen)
	}
	rest := make([]byte, idLen+gcmSaltSize+gcmMACSize)
	if _, err := io.ReadFull(r, rest); err != nil {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm header truncated", ErrDamaged)
	}
	id := string(rest[:idLen])
	if !keyIDRE().MatchString(id) {
		return gcmHeader{}, fmt.Errorf("%w: aes256-gcm header: malformed key id", ErrDamaged)
	}
	signed := append(fixed, rest[:idLen+gcmSaltSize]...)
	return gcmHeader{keyID: id, salt: rest[idLen : idLen+gcmSaltSize], mac: rest[idLen+gcmSaltSize:], signed: signed}, nil
}

// KeyID returns the key id in the header of the aes256-gcm file r starts
// with (reading only the header); an error wrapping ErrDamaged when r does
// not start with one.
func KeyID(r io.Reader) (string, error) {
	h, err := readGCMHeader(r)
	if err != nil {
		return "", err
	}
	return h.keyID, nil
}

func (c Config) decryptGCM(r io.Reader) (io.Reader, error) {
	h, err := readGCMHeader(r)
	if err != nil {
		return nil, err
	}
	ring, err := c.gcmKeys()
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
		return nil, fmt.Errorf("%w: not an openssl enc file (no Salted__ header)", ErrDamaged)
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
			c.err = fmt.Errorf("%w: aes256-cbc: the file is truncated (%d bytes, not whole blocks)", ErrDamaged, total)
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
