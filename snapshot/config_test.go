package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/seal"
)

// bindMount binds from onto to until the test ends; it skips (fails when CI=true) without root.
func bindMount(t *testing.T, from, to string) {
	t.Helper()
	must(t, os.MkdirAll(to, 0o755))
	if err := syscall.Mount(from, to, "", syscall.MS_BIND, ""); err != nil {
		testutil.Unavailable(t, "cannot bind mount (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(to, syscall.MNT_DETACH) })
}

// wantConfigError fails unless err is a *config.Error for variable name.
func wantConfigError(t *testing.T, err error, name string) {
	t.Helper()
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != name {
		t.Fatalf("error %v, want a *config.Error for %s", err, name)
	}
}

// TestConfig_InsideSource: DIR (or a file:// remote) reached through a
// symlink or a bind mount into a source is inside it, compared by device and
// inode; a source that does not exist yet is compared by its path.
func TestConfig_InsideSource(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	must(t, os.MkdirAll(filepath.Join(data, "sub"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "elsewhere"), 0o755))
	must(t, os.Symlink(data, filepath.Join(root, "datalink")))
	must(t, os.Symlink("data/sub", filepath.Join(root, "sublink")))
	c := Config{Sources: []string{filepath.Join(root, "missing", "src"), data}}

	for _, tc := range []struct {
		name, path, want string
	}{
		{"lexically inside", filepath.Join(data, "backups"), data},
		{"the source itself", data, data},
		{"through a symlink, missing tail", filepath.Join(root, "datalink", "backups", "x"), data},
		{"through a relative symlink to a subdirectory", filepath.Join(root, "sublink"), data},
		{"dot-dot out of a symlink", filepath.Join(root, "datalink", "..", "elsewhere"), ""},
		{"missing source, lexically", filepath.Join(root, "missing", "src", "b"), filepath.Join(root, "missing", "src")},
		{"beside", filepath.Join(root, "elsewhere", "backups"), ""},
		{"a parent of the source", root, ""},
		{"prefix but not inside", data + "2", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.InsideSource(tc.path); got != tc.want {
				t.Fatalf("InsideSource(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
	t.Run("bind mount", func(t *testing.T) {
		mnt := filepath.Join(root, "mnt")
		bindMount(t, data, mnt)
		if got := c.InsideSource(filepath.Join(mnt, "backups")); got != data {
			t.Fatalf("InsideSource(bind mount of the source) = %q, want %q", got, data)
		}
	})
	t.Run("bind mount of a subdirectory (a subPath of the same volume)", func(t *testing.T) {
		mnt := filepath.Join(root, "mnt-sub")
		bindMount(t, filepath.Join(data, "sub"), mnt)
		if got := c.InsideSource(filepath.Join(mnt, "backups")); got != data {
			t.Fatalf("InsideSource(bind mount of a subdirectory of the source) = %q, want %q", got, data)
		}
		if got := c.InsideSource(filepath.Join(root, "elsewhere")); got != "" {
			t.Fatalf("InsideSource(beside, with the mount) = %q", got)
		}
	})
	t.Run("Validate names SNAPVISOR_DIR", func(t *testing.T) {
		c := Config{Sources: []string{data}, Dir: filepath.Join(root, "datalink", "backups"), Name: "snapshot", Compression: CompressionGzip}
		wantConfigError(t, c.Validate(), "SNAPVISOR_DIR")
		c.Dir = filepath.Join(root, "elsewhere", "backups")
		must(t, c.Validate())
	})
}

// TestConfig_ValidateName: the longest file name written for a snapshot (the
// temporary name of the checksum file of the longest extension) must fit in
// 255 bytes; a longer SNAPVISOR_NAME is a configuration error.
func TestConfig_ValidateName(t *testing.T) {
	for _, comp := range []string{CompressionGzip, CompressionZstd, CompressionNone} {
		for _, alg := range algorithms {
			if ext := extensionFor(comp) + seal.Suffix(alg); len(ext) > len(longestExtension) {
				t.Errorf("extension %s is longer than longestExtension %s", ext, longestExtension)
			}
		}
	}
	c := Config{Sources: []string{"/data"}, Dir: "/backups", Compression: CompressionZstd}
	c.Name = strings.Repeat("n", maxNameLen)
	must(t, c.Validate())
	longest := "." + c.Name + "-20060102T150405Z.tar.zst.aes256gcm.sha256.tmp-" + strings.Repeat("f", 12)
	if len(longest) != 255 {
		t.Errorf("longest temporary name with NAME of %d bytes is %d bytes, want 255", maxNameLen, len(longest))
	}
	c.Name += "n"
	wantConfigError(t, c.Validate(), "SNAPVISOR_NAME")
	c.Name = strings.Repeat("n", 300)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("Validate(NAME of 300) = %v, want the limit stated", err)
	}
}

// TestConfig_CheckPaths: a source or snapshot directory that is a regular
// file, a symlink loop or under a file is a configuration error naming the
// variable; missing ones are fine (created, or restored).
func TestConfig_CheckPaths(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	must(t, os.WriteFile(file, []byte("x"), 0o644))
	loop := filepath.Join(root, "loop")
	must(t, os.Symlink(loop, loop))
	dir := filepath.Join(root, "dir")
	must(t, os.Mkdir(dir, 0o755))
	for _, tc := range []struct {
		name, src, dir, want string
	}{
		{"existing", dir, filepath.Join(root, "backups"), ""},
		{"missing", filepath.Join(root, "nope"), filepath.Join(root, "nope2", "backups"), ""},
		{"streaming mode", dir, "", ""},
		{"source is a file", file, filepath.Join(root, "backups"), "SNAPVISOR_SOURCE"},
		{"source is a symlink loop", loop, filepath.Join(root, "backups"), "SNAPVISOR_SOURCE"},
		{"source under a file", filepath.Join(file, "data"), filepath.Join(root, "backups"), "SNAPVISOR_SOURCE"},
		{"dir is a file", dir, file, "SNAPVISOR_DIR"},
		{"dir is a symlink loop", dir, loop, "SNAPVISOR_DIR"},
		{"dir under a file", dir, filepath.Join(file, "backups"), "SNAPVISOR_DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{Sources: []string{tc.src}, Dir: tc.dir, Name: "snapshot", Compression: CompressionGzip}
			err := c.CheckPaths()
			if tc.want == "" {
				must(t, err)
				return
			}
			wantConfigError(t, err, tc.want)
		})
	}
}

// TestConfig_CheckDirWritable: a snapshot directory on a read-only file
// system or under /proc is a configuration error, checked on the directory
// or, when it does not exist yet, on its nearest existing ancestor.
func TestConfig_CheckDirWritable(t *testing.T) {
	root := t.TempDir()
	ro := filepath.Join(root, "ro")
	mountTmpfs(t, ro, "1m")
	must(t, os.Mkdir(filepath.Join(ro, "backups"), 0o700))
	must(t, syscall.Mount("", ro, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""))
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"writable, missing", filepath.Join(root, "a", "b"), ""},
		{"writable, existing", root, ""},
		{"streaming mode", "", ""},
		{"read-only, existing", filepath.Join(ro, "backups"), "SNAPVISOR_DIR"},
		{"read-only, missing", filepath.Join(ro, "other", "backups"), "SNAPVISOR_DIR"},
		{"under /proc", "/proc/snapvisor-backups", "SNAPVISOR_DIR"},
		{"/sys", "/sys", "SNAPVISOR_DIR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Config{Dir: tc.dir}.CheckDirWritable()
			if tc.want == "" {
				must(t, err)
				return
			}
			wantConfigError(t, err, tc.want)
		})
	}
}
