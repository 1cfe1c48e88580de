package snapshot

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"snapvisor/config"
	"snapvisor/internal/testutil"
	"snapvisor/seal"
)

func testConfig(t *testing.T, compression string, sources ...string) Config {
	t.Helper()
	return Config{Sources: sources, Dir: filepath.Join(t.TempDir(), "backups"), Name: "snapshot", Compression: compression}
}

func TestCreate_RoundTrip(t *testing.T) {
	for _, comp := range []string{CompressionGzip, CompressionZstd, CompressionNone} {
		t.Run(comp, func(t *testing.T) {
			ctx := context.Background()
			src := filepath.Join(t.TempDir(), "data")
			makeTree(t, src)
			want := model(t, src)
			cfg := testConfig(t, comp, src)

			info, err := Create(ctx, cfg, testLogger(t))
			must(t, err)
			if info.Compression != comp || !strings.HasSuffix(info.Name, cfg.extension()) || info.Changed != 0 {
				t.Fatalf("unexpected info %+v", info)
			}
			fi, err := os.Stat(info.Path)
			must(t, err)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("archive mode %v, want 0600", fi.Mode())
			}
			di, err := os.Stat(cfg.Dir)
			must(t, err)
			if di.Mode().Perm() != 0o700 {
				t.Errorf("snapshot dir mode %v, want 0700", di.Mode())
			}
			list, err := List(cfg.Dir, cfg.Name)
			must(t, err)
			if len(list) != 1 || list[0].Path != info.Path || list[0].Size != info.Size || list[0].SHA256 != info.SHA256 {
				t.Fatalf("List = %+v, want the one snapshot %+v", list, info)
			}
			must(t, VerifyWith(ctx, info.Path, seal.Config{}))

			// Change the source, then restore: the old tree comes back, the changed one is kept aside.
			must(t, os.WriteFile(filepath.Join(src, "text.txt"), []byte("changed"), 0o644))
			must(t, os.WriteFile(filepath.Join(src, "new-file"), []byte("new"), 0o644))
			now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			must(t, Restore(ctx, cfg, info.Path, RestoreOptions{Now: func() time.Time { return now }}, testLogger(t)))
			sameTree(t, want, model(t, src), false)
			prev := src + ".pre-restore-20300102T030405Z"
			if b, err := os.ReadFile(filepath.Join(prev, "new-file")); err != nil || string(b) != "new" {
				t.Fatalf("previous contents not kept in %s: %v", prev, err)
			}
			var st syscall.Stat_t
			must(t, syscall.Stat(filepath.Join(src, "sparse.img"), &st))
			if st.Blocks*512 >= 1<<20 {
				t.Errorf("sparse.img restored with %d bytes allocated, want it sparse", st.Blocks*512)
			}
			if leftovers := hiddenEntries(t, filepath.Dir(src)); len(leftovers) > 0 {
				t.Errorf("staging left behind: %v", leftovers)
			}

			t.Run("DiscardCurrent", func(t *testing.T) {
				must(t, os.WriteFile(filepath.Join(src, "new-file-2"), []byte("new"), 0o644))
				must(t, Restore(ctx, cfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
				sameTree(t, want, model(t, src), false)
				names := entriesOf(t, filepath.Dir(src))
				if len(names) != 2 { // data and the first pre-restore copy
					t.Fatalf("parent holds %v, want data and one pre-restore copy", names)
				}
			})
		})
	}
}

func hiddenEntries(t *testing.T, dir string) []string {
	var out []string
	for _, n := range entriesOf(t, dir) {
		if strings.HasPrefix(n, ".") {
			out = append(out, n)
		}
	}
	return out
}

func TestCreate_MultipleSourcesAndExclude(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	a, b := filepath.Join(base, "one", "app"), filepath.Join(base, "two", "db")
	writeFile(t, filepath.Join(a, "keep.txt"), []byte("a"), 0o644)
	writeFile(t, filepath.Join(a, "skip.tmp"), []byte("tmp"), 0o644)
	writeFile(t, filepath.Join(a, "cache", "big"), []byte("cache"), 0o644)
	writeFile(t, filepath.Join(b, "table"), []byte("b"), 0o644)
	cfg := testConfig(t, CompressionGzip, a, b)
	cfg.Exclude = []string{"*.tmp", "cache"}
	info, err := Create(ctx, cfg, testLogger(t))
	must(t, err)
	fi, err := os.Stat(a)
	must(t, err)
	must(t, os.Remove(filepath.Join(a, "skip.tmp")))
	must(t, os.RemoveAll(filepath.Join(a, "cache")))
	must(t, os.Chtimes(a, fi.ModTime(), fi.ModTime())) // as it was when snapshotted
	wantA, wantB := model(t, a), model(t, b)
	must(t, os.RemoveAll(a))
	must(t, os.WriteFile(filepath.Join(b, "table"), []byte("changed"), 0o644))
	must(t, Restore(ctx, cfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
	sameTree(t, wantA, model(t, a), false)
	sameTree(t, wantB, model(t, b), false)

	t.Run("SourceMissingFromArchive", func(t *testing.T) {
		c := filepath.Join(base, "three", "extra")
		writeFile(t, filepath.Join(c, "x"), []byte("x"), 0o644)
		cfg2 := cfg
		cfg2.Sources = []string{a, b, c}
		err := Restore(ctx, cfg2, info.Path, RestoreOptions{}, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), `"extra/"`) {
			t.Fatalf("Restore = %v, want an error naming the missing directory", err)
		}
		sameTree(t, wantA, model(t, a), false)
	})
}

func TestCreate_SkipsSpecialFiles(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("f"), 0o644)
	must(t, syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644))
	cfg := testConfig(t, CompressionGzip, src)
	info, err := Create(context.Background(), cfg, testLogger(t))
	must(t, err)
	if info.Skipped != 1 || info.Files != 1 {
		t.Fatalf("info = %+v, want 1 file and 1 skipped", info)
	}
	must(t, VerifyWith(context.Background(), info.Path, seal.Config{}))
}

func TestCreate_FileChangesWhileRead(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "data")
	orig := []byte(strings.Repeat("0123456789", 100000)) // 1 MB
	writeFile(t, filepath.Join(src, "grows"), orig, 0o644)
	writeFile(t, filepath.Join(src, "shrinks"), orig, 0o644)
	writeFile(t, filepath.Join(src, "steady"), orig, 0o644)
	cfg := testConfig(t, CompressionGzip, src)
	h := hooks{beforeCopy: func(p string) {
		switch filepath.Base(p) {
		case "grows":
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = f.Write([]byte(strings.Repeat("more", 100000)))
			must(t, err)
			must(t, f.Close())
		case "shrinks":
			must(t, os.Truncate(p, 1000))
		}
	}}
	info, err := create(ctx, cfg, testLogger(t), h)
	must(t, err)
	if info.Changed != 2 {
		t.Fatalf("Changed = %d, want 2", info.Changed)
	}
	must(t, VerifyWith(ctx, info.Path, seal.Config{}))
	must(t, Restore(ctx, cfg, info.Path, RestoreOptions{DiscardCurrent: true}, testLogger(t)))
	for name, want := range map[string][]byte{
		"grows":   orig,
		"shrinks": append(append([]byte{}, orig[:1000]...), make([]byte, len(orig)-1000)...),
		"steady":  orig,
	} {
		got, err := os.ReadFile(filepath.Join(src, name))
		must(t, err)
		if string(got) != string(want) {
			t.Errorf("%s: restored %d bytes differing from the expected %d", name, len(got), len(want))
		}
	}
}

func TestCreate_RemovesLeftovers(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("f"), 0o644)
	cfg := testConfig(t, CompressionGzip, src)
	must(t, os.MkdirAll(cfg.Dir, 0o700))
	leftovers := []string{
		".snapshot-20200101T000000Z.tar.gz.tmp-123",
		".other-20200101T000000Z.tar.zst.sha256.tmp-9",
		"snapshot-20200101T000001Z.tar.gz.sha256", // orphan checksum: archive missing
	}
	for _, n := range append(leftovers, "notes.txt", ".keep") {
		must(t, os.WriteFile(filepath.Join(cfg.Dir, n), []byte("x"), 0o600))
	}
	info, err := Create(context.Background(), cfg, testLogger(t))
	must(t, err)
	got := entriesOf(t, cfg.Dir)
	want := []string{".keep", "notes.txt", info.Name, info.Name + ".sha256"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("snapshot dir holds %v, want %v", got, want)
	}
}

func TestCreate_DiskFull(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "small")
	must(t, os.MkdirAll(dir, 0o700))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		testutil.Unavailable(t, "cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })

	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "small"), []byte("small"), 0o644)
	cfg := testConfig(t, CompressionGzip, src)
	cfg.Dir = dir
	first, err := Create(ctx, cfg, testLogger(t))
	must(t, err)

	// 8 MiB of incompressible data does not fit in 4 MiB.
	rnd := make([]byte, 8<<20)
	x := uint64(88172645463325252)
	for i := range rnd {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		rnd[i] = byte(x)
	}
	writeFile(t, filepath.Join(src, "random"), rnd, 0o644)
	_, err = create(ctx, cfg, testLogger(t), hooks{now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err == nil || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Create on a full disk = %v, want ENOSPC", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the snapshot", err)
	}
	list, err := List(dir, cfg.Name)
	must(t, err)
	if len(list) != 1 || list[0].Name != first.Name {
		t.Fatalf("List after failure = %+v, want only %s", list, first.Name)
	}
	if got := entriesOf(t, dir); len(got) != 2 {
		t.Fatalf("snapshot dir holds %v, want only the first snapshot and its checksum", got)
	}
	must(t, VerifyWith(ctx, first.Path, seal.Config{}))
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	sum := strings.Repeat("ab", 32)
	files := map[string]string{
		"snapshot-20240101T000000Z.tar.gz":         "x",
		"snapshot-20240101T000000Z.tar.gz.sha256":  sum + "  snapshot-20240101T000000Z.tar.gz\n",
		"snapshot-20240301T000000Z.tar.zst":        "x",
		"snapshot-20240301T000000Z.tar.zst.sha256": sum + "  snapshot-20240301T000000Z.tar.zst\n",
		"snapshot-20240201T000000Z.tar":            "x",
		"snapshot-20240201T000000Z.tar.sha256":     sum + "  snapshot-20240201T000000Z.tar\n",
		"snapshot-20240401T000000Z.tar.gz":         "no checksum",
		"snapshot-20240501T000000Z.tar.gz":         "partial checksum",
		"snapshot-20240501T000000Z.tar.gz.sha256":  sum[:20],
		"snapshot-20240601T000000Z.tar.gz":         "checksum of another file",
		"snapshot-20240601T000000Z.tar.gz.sha256":  sum + "  other.tar.gz\n",
		"other-20240701T000000Z.tar.gz":            "x",
		"other-20240701T000000Z.tar.gz.sha256":     sum + "  other-20240701T000000Z.tar.gz\n",
		".snapshot-20240801T000000Z.tar.gz.tmp-1":  "temp",
		"snapshot-2024.tar.gz":                     "bad name",
	}
	for n, c := range files {
		must(t, os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600))
	}
	t.Run("Name", func(t *testing.T) {
		list, err := List(dir, "snapshot")
		must(t, err)
		var names []string
		for _, i := range list {
			names = append(names, i.Name+"/"+i.Compression)
		}
		want := "snapshot-20240301T000000Z.tar.zst/zstd,snapshot-20240201T000000Z.tar/none,snapshot-20240101T000000Z.tar.gz/gzip"
		if strings.Join(names, ",") != want {
			t.Fatalf("List = %v, want %s", names, want)
		}
		if !list[0].Time.Equal(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)) || list[0].Size != 1 || list[0].SHA256 != sum {
			t.Fatalf("bad info %+v", list[0])
		}
	})
	t.Run("AnyName", func(t *testing.T) {
		list, err := List(dir, "")
		must(t, err)
		if len(list) != 4 {
			t.Fatalf("List(any) = %d snapshots, want 4", len(list))
		}
	})
	t.Run("MissingDir", func(t *testing.T) {
		list, err := List(filepath.Join(dir, "nope"), "snapshot")
		if err != nil || len(list) != 0 {
			t.Fatalf("List(missing) = %v, %v", list, err)
		}
	})
}

func TestConfig_Validate(t *testing.T) {
	ok := Config{Sources: []string{"/data"}, Dir: "/backups", Name: "snapshot", Compression: "gzip"}
	must(t, ok.Validate())
	cases := []struct {
		name, varName string
		mod           func(*Config)
	}{
		{"NoSource", "SNAPVISOR_SOURCE", func(c *Config) { c.Sources = nil }},
		{"RootSource", "SNAPVISOR_SOURCE", func(c *Config) { c.Sources = []string{"/"} }},
		{"BaseCollision", "SNAPVISOR_SOURCE", func(c *Config) { c.Sources = []string{"/a/data", "/b/data"} }},
		{"BadExclude", "SNAPVISOR_EXCLUDE", func(c *Config) { c.Exclude = []string{"[x"} }},
		{"DirInSource", "SNAPVISOR_DIR", func(c *Config) { c.Dir = "/data/backups" }},
		{"DirIsSource", "SNAPVISOR_DIR", func(c *Config) { c.Dir = "/data" }},
		{"BadName", "SNAPVISOR_NAME", func(c *Config) { c.Name = "../x" }},
		{"BadCompression", "SNAPVISOR_COMPRESSION", func(c *Config) { c.Compression = "bzip2" }},
		{"GzipLevel", "SNAPVISOR_COMPRESSION_LEVEL", func(c *Config) { c.CompressionLevel = 10 }},
		{"ZstdLevel", "SNAPVISOR_COMPRESSION_LEVEL", func(c *Config) { c.Compression = "zstd"; c.CompressionLevel = 23 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			var ce *config.Error
			if err := c.Validate(); !errors.As(err, &ce) || ce.Var != tc.varName {
				t.Fatalf("Validate = %v, want a *config.Error for %s", err, tc.varName)
			}
		})
	}
	t.Run("ZstdLevel22", func(t *testing.T) {
		c := ok
		c.Compression, c.CompressionLevel = "zstd", 22
		must(t, c.Validate())
	})
}

func TestVerify_ReadsManifestAndSummary(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("content"), 0o644)
	cfg := testConfig(t, CompressionZstd, src)
	info, err := Create(context.Background(), cfg, testLogger(t))
	must(t, err)
	f, err := os.Open(info.Path)
	must(t, err)
	defer f.Close()
	var names []string
	s, err := readArchive(context.Background(), f, CompressionZstd, func(h *tar.Header, name string, _ *tar.Reader) error {
		names = append(names, name)
		return nil
	})
	must(t, err)
	if s.manifest == nil || s.manifest.Format != Format || s.manifest.Sources[0].Dir != "data" || s.manifest.Sources[0].Path != src {
		t.Fatalf("manifest = %+v", s.manifest)
	}
	if s.summary == nil || s.summary.Files != 1 || s.summary.Bytes != 7 || s.summary.Dirs != 1 {
		t.Fatalf("summary = %+v", s.summary)
	}
	if strings.Join(names, ",") != "data,data/f" {
		t.Fatalf("entries %v", names)
	}
}

func TestCreate_LogsProgress(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("content"), 0o644)
	core, logs := observer.New(zap.InfoLevel)
	h := hooks{progressEvery: time.Millisecond, beforeCopy: func(string) {
		// Hold the run until the progress logger has reported once.
		deadline := time.Now().Add(10 * time.Second)
		for logs.FilterMessage("snapshot progress").Len() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}}
	_, err := create(context.Background(), testConfig(t, CompressionGzip, src), zap.New(core), h)
	must(t, err)
	entries := logs.FilterMessage("snapshot progress").All()
	if len(entries) == 0 {
		t.Fatal("no progress logged")
	}
	fields := entries[0].ContextMap()
	for _, k := range []string{"bytes", "written", "mib_per_s", "snapshot"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("progress log lacks %q: %v", k, fields)
		}
	}
}

func TestCreate_Refusals(t *testing.T) {
	src := filepath.Join(t.TempDir(), "data")
	writeFile(t, filepath.Join(src, "f"), []byte("content"), 0o644)
	t.Run("Locked", func(t *testing.T) {
		cfg := testConfig(t, CompressionGzip, src)
		must(t, os.MkdirAll(cfg.Dir, 0o700))
		unlock, err := lockDir(cfg.Dir)
		must(t, err)
		defer unlock()
		if _, err := Create(context.Background(), cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("Create while locked = %v, want an in-use error", err)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		cfg := testConfig(t, CompressionGzip, src)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Create(ctx, cfg, testLogger(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("Create canceled = %v", err)
		}
		if got := entriesOf(t, cfg.Dir); len(got) != 0 {
			t.Fatalf("canceled run left %v", got)
		}
	})
	t.Run("SourceNotADirectory", func(t *testing.T) {
		cfg := testConfig(t, CompressionGzip, filepath.Join(src, "f"))
		if _, err := Create(context.Background(), cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("Create = %v", err)
		}
	})
	t.Run("SameSecond", func(t *testing.T) {
		cfg := testConfig(t, CompressionGzip, src)
		fixed := hooks{now: func() time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC) }}
		_, err := create(context.Background(), cfg, testLogger(t), fixed)
		must(t, err)
		if _, err := create(context.Background(), cfg, testLogger(t), fixed); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("second Create in the same second = %v", err)
		}
	})
}
