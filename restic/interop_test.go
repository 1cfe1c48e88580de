package restic

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestBackup_ResticReads(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "data")
	writeTree(t, src, map[string]string{"a.txt": "hello", "sub/b.txt": "world", "sub/deep/c": string(make([]byte, 3<<20))})
	os.Symlink("a.txt", filepath.Join(src, "link"))
	os.Mkdir(filepath.Join(src, "empty"), 0o700)
	os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "hard"))
	repoDir := filepath.Join(tmp, "repo")
	r := openOrInit(t, openFileStore(t, repoDir))
	backupNow(t, src, r)
	t.Log(resticCLI(t, repoDir, "check", "--read-data"))
	t.Log(resticCLI(t, repoDir, "snapshots"))
	out := filepath.Join(tmp, "out")
	t.Log(resticCLI(t, repoDir, "restore", "latest", "--target", out))
	if b, err := exec.Command("diff", "-r", "--no-dereference", src, filepath.Join(out, src)).CombinedOutput(); err != nil {
		t.Fatalf("diff: %v\n%s", err, b)
	}
}
