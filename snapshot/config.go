// Package snapshot writes, lists, verifies and restores snapshots of one or
// more source directories into a local snapshot directory.
//
// # Format
//
// A snapshot is a standard POSIX (PAX) tar stream, optionally compressed with
// gzip (a plain single-member gzip file) or zstd (a sequence of independent
// 1 MiB frames, which every zstd decoder reads as one stream), both written
// in parallel by blockwriter.go, named
//
//	<name>-<UTC YYYYMMDDTHHMMSSZ>.tar[.gz|.zst]
//
// next to a "<file>.sha256" in the format of sha256sum. Both are written to
// temporary names in the snapshot directory, fsynced and renamed into place,
// the checksum before the archive: a snapshot name that exists is complete.
//
// Every source directory becomes one top-level directory of the archive named
// after its base name (SNAPVISOR_SOURCE=/srv/data gives "data/..."), so that
// "tar -xzf X" (GNU tar) yields directories named like the sources. Two extra
// top-level regular files frame the content:
//
//   - ".snapvisor-manifest.json", the first entry: format, tool version,
//     host, sources and creation time (what is known before the walk);
//   - ".snapvisor-summary.json", the last entry: file, directory, link and
//     byte counts and the files that changed while they were read (known only
//     at the end of a streaming write).
//
// Restore never writes them to a target; a manual "tar -x" extracts them into
// the current directory, where they are harmless and can be deleted.
// Archives without them (made by GNU tar with "tar -czf X -C /srv data") are
// accepted too.
//
// # Without snapvisor
//
//	sha256sum -c X.sha256 && tar -xzf X          # gzip
//	sha256sum -c X.sha256 && zstd -dc X | tar -x  # zstd
//
// restore every source directory (as root, with owners) into the current directory.
//
// # Encryption
//
// With Config.Encryption set, the compressed stream is encrypted before it is
// hashed and written, and the name gets .aes256gcm, .age, .gpg or .aes256cbc
// after the compression suffix; the .sha256 covers the encrypted bytes.
// Restore and VerifyWith decrypt by the suffix with every configured
// credential. The formats are described in crypt.go; keyring.go has key rotation.
//
// # Writing
//
// Create streams in constant memory: walk, tar framing, parallel compression
// and sha256+write overlap on separate goroutines. The archive is written to
// ".<final>.tmp-*" in the snapshot directory; a run holds an flock on that
// directory and first deletes leftovers of crashed runs. A file that changes
// while it is read is stored with the size its header promised (zero padded
// or cut), logged and counted; FIFOs, sockets and devices are skipped with a
// warning.
//
// # Restoring
//
// Restore extracts into hidden staging directories beside the targets,
// hashing the archive as it reads it; entries that would escape (absolute
// names, "..", paths through a symlink, hardlinks outside) and device nodes
// are refused. Only when the archive was read to its end, matched its
// .sha256 and the staging data is synced are the targets swapped, the
// previous contents kept as <target>.pre-restore-<UTC time>.
//
// A target that is a mount point (a container volume) cannot be renamed: it
// is staged in <target>/.snapvisor-restore-* and its entries are swapped in
// two phases, the previous ones kept in
// <target>/.snapvisor-pre-restore-<UTC time>-*; a plain directory is
// exchanged with its staging directory (RENAME_EXCHANGE). A journal written
// before the swap lets Recover complete one that a crash interrupted (see
// swap.go). Snapshots leave restore's work files and lost+found out at a
// source's root.
package snapshot

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"snapvisor/config"
)

// Version is the tool version recorded in every manifest; the entrypoint sets it at start-up.
var Version = "dev"

// Compression names accepted in Config.Compression.
const (
	CompressionGzip = "gzip"
	CompressionZstd = "zstd"
	CompressionNone = "none"
)

// Manifest and summary entry names, top-level files of every archive we write.
const (
	ManifestName = ".snapvisor-manifest.json"
	SummaryName  = ".snapvisor-summary.json"
)

// Config is loaded by envconfig under prefix SNAPVISOR_.
type Config struct {
	Sources          []string `envconfig:"SNAPVISOR_SOURCE" default:"/data" desc:"comma-separated directories to snapshot; each becomes a top-level directory of the archive named after its base name, and restore writes it back to the same path"`
	Exclude          []string `envconfig:"SNAPVISOR_EXCLUDE" desc:"comma-separated globs (path.Match syntax) of entries to leave out, matched against the base name, the path relative to its source and the archive path <source-base>/<relative>"`
	Dir              string   `envconfig:"SNAPVISOR_DIR" default:"/backups" desc:"local snapshot directory (created 0700; archives are 0600); set it empty for streaming mode: snapshots go straight to SNAPVISOR_REMOTES, no local copy"`
	Name             string   `envconfig:"SNAPVISOR_NAME" default:"snapshot" desc:"snapshot file name prefix: <NAME>-<UTC YYYYMMDDTHHMMSSZ>.tar[.gz|.zst]"`
	Compression      string   `envconfig:"SNAPVISOR_COMPRESSION" default:"gzip" desc:"gzip|zstd|none"`
	CompressionLevel int      `envconfig:"SNAPVISOR_COMPRESSION_LEVEL" desc:"gzip 1-9 (default 6); zstd 1-22 mapped to klauspost levels (default 3); 0 means the default"`
	// Encryption is loaded as a spec of its own (see crypt_config.go); the zero value encrypts nothing.
	Encryption Encryption `ignored:"true"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks the configuration and returns a *config.Error naming the faulty variable.
func (c Config) Validate() error {
	if len(c.Sources) == 0 {
		return config.Invalid("SOURCE", "", "one or more comma-separated directory paths")
	}
	bases := map[string]string{}
	for _, s := range c.Sources {
		raw := strings.Join(c.Sources, ",")
		if strings.TrimSpace(s) == "" {
			return config.Invalid("SOURCE", raw, "comma-separated directory paths, none empty")
		}
		base := sourceBase(s)
		if base == "" {
			return config.Invalid("SOURCE", raw, "directories other than / (each becomes a top-level directory named after its base name)")
		}
		if other, dup := bases[base]; dup {
			e := config.Invalid("SOURCE", raw, "sources with distinct base names (each becomes a top-level directory of the archive)")
			e.Err = fmt.Errorf("%q and %q both map to %q", other, s, base)
			return e
		}
		bases[base] = s
	}
	for _, p := range c.Exclude {
		if _, err := filepath.Match(p, ""); err != nil || p == "" {
			e := config.Invalid("EXCLUDE", strings.Join(c.Exclude, ","), "comma-separated globs such as *.tmp or cache/*")
			e.Err = fmt.Errorf("pattern %q: %w", p, err)
			return e
		}
	}
	if c.Dir != "" && strings.TrimSpace(c.Dir) == "" {
		// Empty is streaming mode (snapshots go straight to the remotes); blanks are a mistake.
		return config.Invalid("DIR", c.Dir, "a directory path, or empty for streaming mode (SNAPVISOR_REMOTES only)")
	}
	if !nameRE.MatchString(c.Name) {
		return config.Invalid("NAME", c.Name, "letters, digits, '.', '_' and '-', starting with a letter or digit")
	}
	switch c.Compression {
	case CompressionGzip:
		if c.CompressionLevel < 0 || c.CompressionLevel > 9 {
			return config.Invalid("COMPRESSION_LEVEL", strconv.Itoa(c.CompressionLevel), "1-9 for gzip (0 means 6)")
		}
	case CompressionZstd:
		if c.CompressionLevel < 0 || c.CompressionLevel > 22 {
			return config.Invalid("COMPRESSION_LEVEL", strconv.Itoa(c.CompressionLevel), "1-22 for zstd (0 means 3)")
		}
	case CompressionNone:
	default:
		return config.Invalid("COMPRESSION", c.Compression, "gzip, zstd or none")
	}
	if dir, err := filepath.Abs(c.Dir); err == nil && c.Dir != "" {
		for _, s := range c.Sources {
			src, err := filepath.Abs(s)
			if err != nil {
				continue
			}
			if rel, err := filepath.Rel(src, dir); err == nil && (rel == "." || filepath.IsLocal(rel)) {
				e := config.Invalid("DIR", c.Dir, "a directory outside every source (a restore replaces the source directories)")
				e.Err = fmt.Errorf("it is inside source %q", s)
				return e
			}
		}
	}
	return c.Encryption.Validate()
}

// level returns the effective compression level.
func (c Config) level() int {
	if c.CompressionLevel != 0 {
		return c.CompressionLevel
	}
	switch c.Compression {
	case CompressionGzip:
		return 6
	case CompressionZstd:
		return 3
	}
	return 0
}

// extension returns the archive file extension for the configured compression
// and encryption: .tar[.gz|.zst][.aes256gcm|.age|.gpg|.aes256cbc].
func (c Config) extension() string { return extensionFor(c.Compression) + c.Encryption.suffix() }

func extensionFor(compression string) string {
	switch compression {
	case CompressionGzip:
		return ".tar.gz"
	case CompressionZstd:
		return ".tar.zst"
	}
	return ".tar"
}

// sourceBase returns the top-level archive directory of a source path, "" when it has none.
func sourceBase(s string) string {
	b := filepath.Base(filepath.Clean(s))
	if b == "/" || b == "." || b == ".." || b == "" {
		return ""
	}
	return b
}
