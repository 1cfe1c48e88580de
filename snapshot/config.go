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
// credential. Package seal describes the formats and has key rotation.
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
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"snapvisor/config"
	"snapvisor/seal"
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
	summaryName  = ".snapvisor-summary.json"
)

// Config is loaded by envconfig under prefix SNAPVISOR_.
type Config struct {
	Sources          []string `envconfig:"SNAPVISOR_SOURCE" default:"/data" desc:"comma-separated directories to snapshot; each becomes a top-level directory of the archive named after its base name, and restore writes it back to the same path"`
	Exclude          []string `envconfig:"SNAPVISOR_EXCLUDE" desc:"comma-separated globs (path.Match syntax) of entries to leave out, matched against the base name, the path relative to its source and the archive path <source-base>/<relative>"`
	Dir              string   `envconfig:"SNAPVISOR_DIR" default:"/backups" desc:"local snapshot directory (created 0700; archives are 0600); set it empty for streaming mode: snapshots go straight to SNAPVISOR_REMOTES, no local copy"`
	Name             string   `envconfig:"SNAPVISOR_NAME" default:"snapshot" desc:"snapshot file name prefix: <NAME>-<UTC YYYYMMDDTHHMMSSZ>.tar[.gz|.zst]"`
	Compression      string   `envconfig:"SNAPVISOR_COMPRESSION" default:"gzip" desc:"gzip|zstd|none"`
	CompressionLevel int      `envconfig:"SNAPVISOR_COMPRESSION_LEVEL" desc:"gzip 1-9 (default 6); zstd 1-22 mapped to klauspost levels (default 3); 0 means the default"`
	// ProgressInterval: while a snapshot or a restore runs, one progress
	// line is logged this often (0: DefaultProgressInterval).
	ProgressInterval time.Duration `envconfig:"SNAPVISOR_PROGRESS_INTERVAL" default:"30s" desc:"while a snapshot or restore lasts longer than this, one progress line (bytes, rate) is logged this often, so docker logs shows a long run is alive; 1s or more"`
	// Encryption is loaded as a spec of its own (seal.Config); the zero value encrypts nothing.
	Encryption seal.Config `ignored:"true"`
}

// Validate checks the configuration and returns a *config.Error naming the
// faulty variable. It keeps the parsed encryption credentials in c
// (seal.Config.Validate): Create, Stream and Restore take a Config that
// passed Validate and do not check it again.
func (c *Config) Validate() error {
	if c.ProgressInterval != 0 && c.ProgressInterval < time.Second {
		return config.Invalid("PROGRESS_INTERVAL", c.ProgressInterval.String(), "a duration of 1s or more, such as 30s or 5m")
	}
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
	if !validPrefix(c.Name) {
		return config.Invalid("NAME", c.Name, "letters, digits, '.', '_' and '-', starting with a letter or digit")
	}
	if len(c.Name) > maxNameLen {
		e := config.Invalid("NAME", c.Name, fmt.Sprintf("at most %d bytes", maxNameLen))
		e.Err = fmt.Errorf("%d bytes: the longest file name written for a snapshot, %q, would exceed %d bytes",
			len(c.Name), "."+c.Name+"-"+TimeLayout+longestExtension+SumSuffix+tempInfix+"<random>", nameMax)
		return e
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
	if c.Dir != "" {
		if s := c.InsideSource(c.Dir); s != "" {
			e := config.Invalid("DIR", c.Dir, "a directory outside every source (a restore replaces the source directories)")
			e.Err = fmt.Errorf("it is inside source %q", s)
			return e
		}
	}
	return c.Encryption.Validate()
}

// File name limits behind maxNameLen.
const (
	nameMax = 255 // NAME_MAX of Linux file systems, in bytes
	// longestExtension is the longest archive extension, compression and
	// encryption suffix together (TestConfig_ValidateName checks it against
	// every combination).
	longestExtension = ".tar.zst.aes256gcm"
	// maxTempRandom is the longest random part of a temporary name: 12 hex
	// digits on sftp:// remotes (os.CreateTemp writes at most 10 digits).
	maxTempRandom = 12
)

// maxNameLen is the longest SNAPVISOR_NAME: with it, the longest file name
// written for a snapshot, the temporary name of the checksum file of the
// longest extension, ".<NAME>-<stamp>.tar.zst.aes256gcm.sha256.tmp-<random>",
// is 255 bytes.
const maxNameLen = nameMax - len(".-"+TimeLayout+longestExtension+SumSuffix+tempInfix) - maxTempRandom

// InsideSource returns the source that the directory p is inside of (or is),
// "" when none. Device and inode of p's ancestors, with the symlinks of its
// existing part resolved, are compared with each source's, so that a symlink
// or a bind mount into a source is caught; so are the paths inside their file
// systems (from /proc/self/mountinfo), which catches a bind mount of a
// subdirectory of a source (a Kubernetes subPath of the same volume); and the
// paths themselves, which covers sources that do not exist yet. It checks
// SNAPVISOR_DIR and every file:// remote: a restore replaces the sources, and
// a snapshot would hold the earlier ones.
func (c Config) InsideSource(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	real := resolveExisting(abs)
	mounts := readMounts()
	for _, s := range c.Sources {
		src, err := filepath.Abs(s)
		if err != nil {
			continue
		}
		if within(src, abs) || within(resolveExisting(src), real) {
			return s
		}
		fi, err := os.Stat(src)
		if err != nil || !fi.IsDir() {
			continue
		}
		key := statKey(fi)
		for a := real; ; a = filepath.Dir(a) {
			if afi, err := os.Stat(a); err == nil && statKey(afi) == key {
				return s
			}
			if a == filepath.Dir(a) {
				break
			}
		}
		sdev, spath, sok := mounts.locate(resolveExisting(src))
		pdev, ppath, pok := mounts.locate(real)
		if sok && pok && sdev == pdev && within(spath, ppath) {
			return s
		}
	}
	return ""
}

// mountTable is /proc/self/mountinfo: where each file system's directories
// are mounted.
type mountTable []mountEntry

type mountEntry struct {
	dev   string // major:minor of the file system
	root  string // the directory of that file system mounted here
	point string // the mount point
}

// readMounts reads /proc/self/mountinfo; nil (nothing known) on error. Parsed
// by hand, like isMountPoint: fields 3-5 of the line format of proc(5).
func readMounts() mountTable {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var t mountTable
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		t = append(t, mountEntry{dev: f[2], root: unescapeMount(f[3]), point: unescapeMount(f[4])})
	}
	return t
}

// locate returns the file system (major:minor) holding the resolved
// absolute path p and p's path inside it: the last-mounted entry with the
// longest mount point above p.
func (t mountTable) locate(p string) (dev, path string, ok bool) {
	best := -1
	for i, m := range t {
		if within(m.point, p) && (best < 0 || len(m.point) >= len(t[best].point)) {
			best = i
		}
	}
	if best < 0 {
		return "", "", false
	}
	rel, _ := filepath.Rel(t[best].point, p)
	return t[best].dev, filepath.Join(t[best].root, rel), true
}

// within reports whether path p is dir or lies below it, lexically.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && (rel == "." || filepath.IsLocal(rel))
}

// resolveExisting returns the absolute path abs with the symlinks of its
// longest existing prefix evaluated and the rest appended; abs itself when
// that fails for another reason than a missing entry (a loop, no permission).
func resolveExisting(abs string) string {
	rest := ""
	for cur := abs; ; {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if !errors.Is(err, fs.ErrNotExist) || parent == cur {
			return abs
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// CheckPaths checks the sources and the snapshot directory as they are on
// disk: each must be a directory or missing (a missing source is restored or
// waited for, a missing snapshot directory is created). A regular file, a
// symlink loop or a path through a file is a *config.Error naming the
// variable. The entrypoint calls it before the service starts when snapshots
// are on.
func (c Config) CheckPaths() error {
	for _, s := range c.Sources {
		if err := checkDirPath(s); err != nil {
			e := config.Invalid("SOURCE", strings.Join(c.Sources, ","), "directories, or paths that do not exist yet")
			e.Err = err
			return e
		}
	}
	if c.Dir != "" {
		if err := checkDirPath(c.Dir); err != nil {
			e := config.Invalid("DIR", c.Dir, "a directory, or a path where one can be created")
			e.Err = err
			return e
		}
	}
	return nil
}

// checkDirPath fails when p exists and is not a directory, or cannot be
// looked up for a reason no later run can overcome (a symlink loop, a file
// in the path, a name too long).
func checkDirPath(p string) error {
	fi, err := os.Stat(p)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is a %s, not a directory", p, FileKind(fi.Mode()))
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return err
	}
	return nil
}

// FileKind names the kind of file of mode m for error messages: "regular
// file", "directory", "symlink", "socket", ...
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "file of another kind"
}

// pseudoFS names the file systems (statfs f_type) where no snapshot can be
// written although access(2) may allow it (as root); "" for others.
func pseudoFS(typ int64) string {
	switch typ {
	case unix.PROC_SUPER_MAGIC:
		return "proc"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	case unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC:
		return "cgroup"
	case unix.DEVPTS_SUPER_MAGIC:
		return "devpts"
	}
	return ""
}

// CheckDirWritable checks that this process can write the snapshot directory,
// or, when it does not exist yet, its nearest existing ancestor, where it
// will be created: access(2) with W_OK (the uid's permissions and read-only
// mounts) and not on a pseudo file system such as /proc. A failure is a
// *config.Error for SNAPVISOR_DIR; streaming mode (Dir empty) passes.
func (c Config) CheckDirWritable() error {
	if c.Dir == "" {
		return nil
	}
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return nil
	}
	p := abs
	for {
		if _, err := os.Stat(p); err == nil || p == filepath.Dir(p) {
			break
		}
		p = filepath.Dir(p)
	}
	fail := func(err error) error {
		e := config.Invalid("DIR", c.Dir, fmt.Sprintf("a directory that uid %d can write (or create)", os.Geteuid()))
		e.Err = err
		return e
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err == nil {
		if name := pseudoFS(int64(st.Type)); name != "" {
			return fail(fmt.Errorf("%s is on %s, a pseudo file system", p, name))
		}
	}
	if err := unix.Access(p, unix.W_OK); err != nil {
		if p != abs {
			return fail(fmt.Errorf("cannot be created in %s: %w", p, err))
		}
		return fail(fmt.Errorf("not writable: %w", err))
	}
	return nil
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

// NameAt returns the name of the snapshot cfg takes at time t.
func (c Config) NameAt(t time.Time) Name {
	return Name{Prefix: c.Name, Time: t, Compression: c.Compression, Encryption: c.Encryption.Effective()}
}

// sourceBase returns the top-level archive directory of a source path, "" when it has none.
func sourceBase(s string) string {
	b := filepath.Base(filepath.Clean(s))
	if b == "/" || b == "." || b == ".." || b == "" {
		return ""
	}
	return b
}

// Retarget returns the same configuration with every source moved to
// dir/<its base name> (the archive's top-level directory for it), so that
// any restore (Restore, RestoreWith for restic and git) writes into dir and
// never touches the real sources: restore drills use it, and so will
// `restore --target DIR` (issue 17). c must have passed Validate.
func (c Config) Retarget(dir string) Config {
	srcs := make([]string, len(c.Sources))
	for i, s := range c.Sources {
		srcs[i] = filepath.Join(dir, sourceBase(s))
	}
	c.Sources = srcs
	return c
}

// Overlaps returns the source that the directory p is inside of (or is,
// InsideSource), or that lies inside p, "" when none: a scratch directory
// (SNAPVISOR_DRILL_DIR) must be apart from every source both ways.
func (c Config) Overlaps(p string) string {
	if s := c.InsideSource(p); s != "" {
		return s
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return ""
	}
	real := resolveExisting(abs)
	for _, s := range c.Sources {
		src, err := filepath.Abs(s)
		if err != nil {
			continue
		}
		if within(abs, src) || within(real, resolveExisting(src)) {
			return s
		}
	}
	return ""
}
