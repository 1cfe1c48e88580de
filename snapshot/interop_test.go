package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"snapvisor/internal/testutil"
	"snapvisor/seal"
)

// TestCreate_GNUToolsRestore checks that a snapshot restores without snapvisor:
// sha256sum -c, then tar -xzf (gzip) or zstd -dc | tar -x (zstd) or tar -xf.
func TestCreate_GNUToolsRestore(t *testing.T) {
	testutil.RequireTool(t, "tar")
	testutil.RequireTool(t, "sha256sum")
	cases := []struct {
		comp, tool, script string
	}{
		{CompressionGzip, "tar", `tar -xzf "$ARCHIVE" -C "$OUT"`},
		{CompressionZstd, "zstd", `zstd -q -dc "$ARCHIVE" | tar -x -C "$OUT"`},
		{CompressionNone, "tar", `tar -xf "$ARCHIVE" -C "$OUT"`},
	}
	for _, tc := range cases {
		t.Run(tc.comp, func(t *testing.T) {
			testutil.RequireTool(t, tc.tool)
			src := filepath.Join(t.TempDir(), "data")
			makeTree(t, src)
			want := model(t, src)
			cfg := testConfig(t, tc.comp, src)
			info, err := Create(context.Background(), cfg, testLogger(t))
			must(t, err)
			run(t, cfg.Dir, "sha256sum", "-c", "--strict", info.Name+".sha256")

			out := t.TempDir()
			cmd := "set -eo pipefail; " + tc.script
			run(t, cfg.Dir, "bash", "-c", "ARCHIVE="+shellQuote(info.Path)+" OUT="+shellQuote(out)+"; "+cmd)
			sameTree(t, want, model(t, filepath.Join(out, "data")), false)
			got := entriesOf(t, out)
			if strings.Join(got, ",") != ManifestName+","+summaryName+",data" {
				t.Fatalf("tar extracted %v, want the data directory, manifest and summary", got)
			}
		})
	}
}

// TestRestore_GNUTarArchive checks the other direction: an archive made by GNU
// tar and sha256sum, named like a snapshot, is listed, verified and restored.
func TestRestore_GNUTarArchive(t *testing.T) {
	testutil.RequireTool(t, "tar")
	testutil.RequireTool(t, "sha256sum")
	cases := []struct{ ext, flags string }{
		{".tar.gz", "-czf"},
		{".tar", "-cf"},
		{".tar.zst", "--zstd -cf"},
	}
	for _, tc := range cases {
		t.Run(strings.TrimPrefix(tc.ext, "."), func(t *testing.T) {
			if tc.ext == ".tar.zst" {
				testutil.RequireTool(t, "zstd")
			}
			ctx := context.Background()
			parent := t.TempDir()
			src := filepath.Join(parent, "data")
			makeTree(t, src)
			want := model(t, src)
			dir := filepath.Join(t.TempDir(), "backups")
			must(t, os.MkdirAll(dir, 0o700))
			name := "snapshot-20240102T030405Z" + tc.ext
			run(t, dir, "bash", "-c", "set -e; tar --format=posix "+tc.flags+" "+name+" -C "+shellQuote(parent)+" data && sha256sum "+name+" > "+name+".sha256")

			list, err := List(dir, "snapshot")
			must(t, err)
			if len(list) != 1 || list[0].Name != name {
				t.Fatalf("List = %+v, want %s", list, name)
			}
			must(t, VerifyWith(ctx, list[0].Path, seal.Config{}))
			must(t, os.RemoveAll(src))
			cfg := Config{Sources: []string{src}, Dir: dir, Name: "snapshot", Compression: CompressionGzip}
			must(t, Restore(ctx, cfg, list[0].Path, RestoreOptions{}, testLogger(t)))
			sameTree(t, want, model(t, src), false)
		})
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
