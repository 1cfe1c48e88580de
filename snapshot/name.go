package snapshot

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"snapvisor/internal/fsx"
	"snapvisor/seal"
)

// The one grammar of snapshot file names and checksum files. Every file
// snapvisor writes for a snapshot, locally and on remotes, is named here:
//
//	<prefix>-<UTC YYYYMMDDTHHMMSSZ>.tar[.gz|.zst][.aes256gcm|.age|.gpg|.aes256cbc]  the archive
//	<archive>.sha256                                                              its sha256sum line
//	.<archive>.tmp-<random>, .<archive>.sha256.tmp-<random>                       while being written
//
// Names on disk are a contract with users' existing snapshots: they do not change.
// The parsers below are written by hand (no regexps): the grammar is a fixed
// tail after a free prefix, read from the end.

// TimeLayout is the UTC time stamp in snapshot file names.
const TimeLayout = "20060102T150405Z"

// SumSuffix ends the name of a snapshot's checksum file: "<archive>.sha256".
const SumSuffix = ".sha256"

// tempInfix separates a temporary file's final name from its random part.
const tempInfix = ".tmp-"

// extensions lists each compression's archive extension, before any
// encryption suffix: one spelling per compression (".tgz" is none of them).
var extensions = []struct{ compression, ext string }{
	{CompressionGzip, ".tar.gz"},
	{CompressionZstd, ".tar.zst"},
	{CompressionNone, ".tar"},
}

// Name is a snapshot archive's file name, split into its parts.
type Name struct {
	Prefix      string    // SNAPVISOR_NAME: letters, digits, '.', '_', '-', starting with a letter or digit
	Time        time.Time // creation time; written in UTC, to the second
	Compression string    // gzip, zstd or none
	Encryption  string    // a seal algorithm; seal.None (or "") for none
}

// String returns the file base name
// "<Prefix>-<UTC YYYYMMDDTHHMMSSZ>.tar[.gz|.zst][<seal.Suffix(Encryption)>]";
// an unknown Compression is written as none. It does not check Prefix.
func (n Name) String() string {
	return n.Prefix + "-" + n.Time.UTC().Format(TimeLayout) + extension(n.Compression, n.Encryption)
}

// extension returns the archive extension of compression and encryption:
// .tar[.gz|.zst][.aes256gcm|.age|.gpg|.aes256cbc].
func extension(compression, encryption string) string {
	ext := ".tar"
	for _, e := range extensions {
		if e.compression == compression {
			ext = e.ext
		}
	}
	return ext + seal.Suffix(encryption)
}

// ParseFileName splits the file base name of a snapshot archive into its
// parts (Time in UTC, Encryption seal.None when it has no suffix); ok is
// false for any other name, including checksum and temporary files. What it
// accepts, String writes back byte for byte.
func ParseFileName(base string) (n Name, ok bool) {
	stem, comp, enc, ok := splitExtension(base)
	if !ok || len(stem) < len("x-"+TimeLayout) {
		return Name{}, false
	}
	prefix, stamp := stem[:len(stem)-len("-"+TimeLayout)], stem[len(stem)-len(TimeLayout):]
	if stem[len(prefix)] != '-' || !validPrefix(prefix) || !stampShaped(stamp) {
		return Name{}, false
	}
	t, err := time.Parse(TimeLayout, stamp)
	if err != nil {
		return Name{}, false
	}
	return Name{Prefix: prefix, Time: t.UTC(), Compression: comp, Encryption: enc}, true
}

// splitExtension splits base into what precedes its archive extension, the
// compression and the encryption the extension announces; ok is false when
// base does not end in ".tar[.gz|.zst]" before any encryption suffix (then
// compression is none). Restore and verify pick their decoders by it for
// files of any name, so the one rule holds there too.
func splitExtension(base string) (stem, compression, encryption string, ok bool) {
	encryption = seal.FromSuffix(base)
	rest := strings.TrimSuffix(base, seal.Suffix(encryption))
	for _, e := range extensions {
		if s, found := strings.CutSuffix(rest, e.ext); found {
			return s, e.compression, encryption, true
		}
	}
	return rest, CompressionNone, encryption, false
}

// validPrefix reports whether p can be a snapshot name prefix (SNAPVISOR_NAME):
// ASCII letters, digits, '.', '_' and '-', starting with a letter or digit.
func validPrefix(p string) bool {
	if p == "" || p[0] == '.' || p[0] == '_' || p[0] == '-' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// stampShaped reports whether s has the shape of TimeLayout: 8 ASCII
// digits, 'T', 6 ASCII digits, 'Z' (time.Parse then checks the values).
func stampShaped(s string) bool {
	if len(s) != len(TimeLayout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; i {
		case 8:
			if c != 'T' {
				return false
			}
		case len(TimeLayout) - 1:
			if c != 'Z' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// FormatSum returns the checksum file of the archive named base with the
// hex digest: the line sha256sum writes, "<digest>  <base>\n".
func FormatSum(digest, base string) []byte {
	return []byte(digest + "  " + base + "\n")
}

// ParseSum parses the content of a checksum file: exactly one complete
// sha256sum line ("<64 hex digits>  <base>\n" or "... *<base>\n", digits in
// either case) naming base. It returns the digest in lower case.
func ParseSum(b []byte, base string) (string, error) {
	line, rest, found := bytes.Cut(b, []byte("\n"))
	if !found || len(rest) != 0 {
		return "", errors.New("not a single complete sha256sum line")
	}
	sum, name, found := strings.Cut(string(line), "  ")
	if !found {
		sum, name, found = strings.Cut(string(line), " *")
	}
	if !found || len(sum) != 64 {
		return "", errors.New("not in sha256sum format")
	}
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("bad digest: %w", err)
	}
	if name != base {
		return "", fmt.Errorf("names %q, not %q", name, base)
	}
	return strings.ToLower(sum), nil
}

// TempName returns the os.CreateTemp pattern of the temporary file written
// before base is renamed into place, ".<base>.tmp-*": hidden, and known to
// IsTemp and removeLeftovers by that spelling.
func TempName(base string) string { return fsx.TempPattern(base) }

// IsTemp reports whether base is the temporary file (TempName) of a snapshot
// archive or of its checksum file: the leftovers of an interrupted Create,
// which the next one deletes. Other temporary files are not.
func IsTemp(base string) bool {
	rest, ok := strings.CutPrefix(base, ".")
	if !ok {
		return false
	}
	// The final name may itself contain ".tmp-" (a prefix "a.tmp-b"): try each.
	for off := 0; ; {
		i := strings.Index(rest[off:], tempInfix)
		if i < 0 {
			return false
		}
		off += i
		if _, isName := ParseFileName(strings.TrimSuffix(rest[:off], SumSuffix)); isName {
			return true
		}
		off++
	}
}
