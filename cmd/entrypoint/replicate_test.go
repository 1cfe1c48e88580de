//go:build !initonly

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/jobs"
	"snapvisor/store/storetest"
)

// remoteKeys lists the snapshot keys on url (entrypoint list --remote), sorted.
func remoteKeys(t *testing.T, env []string, url string) []string {
	t.Helper()
	var out []string
	for _, s := range remoteList(t, env, url) {
		out = append(out, s.Key)
	}
	slices.Sort(out)
	return out
}

// TestEntrypoint_RedisReplicationStory: Redis as PID 1 streaming its
// snapshots to two regions (two MinIO servers); region B is down for a
// while; the scheduled replication fills it from region A, so that both hold
// every snapshot; a restore drill of B's newest snapshot with
// redis-check-rdb passes, and the data directory is never touched by it.
func TestEntrypoint_RedisReplicationStory(t *testing.T) {
	requireRoot(t)
	testutil.RequireTool(t, "redis-server")
	testutil.RequireTool(t, "redis-cli")
	testutil.RequireTool(t, "redis-check-rdb")
	a, b := storetest.StartMinIO(t), storetest.StartMinIO(t)
	a.MakeBucket(t, "region-a")
	b.MakeBucket(t, "region-b")
	urlA, urlB := a.URL("region-a", "redis"), b.URL("region-b", "redis")
	root := t.TempDir()
	data := filepath.Join(root, "data")
	port := storetest.FreePort(t)
	env := append(a.Env(), "SNAPVISOR_REMOTES="+urlA+","+urlB, "SNAPVISOR_REMOTE_RETRIES=1", "SNAPVISOR_REMOTE_BACKOFF=100ms",
		"SNAPVISOR_REMOTE_TIMEOUT=20s", "SNAPVISOR_BACKUP=true", "SNAPVISOR_SCHEDULE=@every 3s", "SNAPVISOR_KEEP=30",
		"SNAPVISOR_NAME=redis", "SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR=", "SNAPVISOR_CONTROL_SOCKET="+sockPath(t),
		"SNAPVISOR_PRE_COMMAND="+redisBGSAVE(port),
		"SNAPVISOR_REPLICATE_SCHEDULE=@every 4s",
		"SNAPVISOR_DRILL_DIR="+filepath.Join(root, "drill"),
		"SNAPVISOR_DRILL_COMMAND=redis-check-rdb $SNAPVISOR_DRILL_DIR/data/dump.rdb")
	p := startPID1(t, env, redisArgv(t, port, data)...)
	pid1 := p.pid1(t)
	writeKeys(t, port)
	testutil.Eventually(t, 30*time.Second, "both regions hold a snapshot", func() bool {
		return len(remoteKeys(t, env, urlA)) > 0 && len(remoteKeys(t, env, urlB)) > 0
	})

	// Region B goes down while three more snapshots are taken.
	b.Kill()
	before := len(remoteKeys(t, env, urlA))
	testutil.Eventually(t, 60*time.Second, "three snapshots while B is down", func() bool {
		return len(remoteKeys(t, env, urlA)) >= before+3
	})
	b.Start()
	downKeys := remoteKeys(t, env, urlA)
	testutil.Eventually(t, 60*time.Second, "replication: B holds every snapshot A holds", func() bool {
		kb := remoteKeys(t, env, urlB)
		for _, k := range downKeys {
			if !slices.Contains(kb, k) {
				return false
			}
		}
		return slices.Equal(kb, remoteKeys(t, env, urlA))
	})

	code, out, errOut := entrypoint(t, env, "status", "--json")
	var st jobs.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("status: exit %d %v: %s %s", code, err, out, errOut)
	}
	if st.LastReplication == nil || len(st.Remotes) != 2 || st.Remotes[1].Newest == "" {
		t.Errorf("status: last replication %+v, remotes %+v: want B's newest snapshot shown", st.LastReplication, st.Remotes)
	}

	t.Run("a drill of B's newest snapshot with redis-check-rdb passes; the data is untouched", func(t *testing.T) {
		// The scheduled snapshots keep running (their BGSAVE rewrites
		// dump.rdb every 3 s, with a new timestamp inside), so the data
		// directory's bytes are no witness. These are: a marker written
		// now, in no snapshot, that any restore into the data directory
		// would remove or replace; the directory's own inode, which a
		// restore's swap would change; and no entry added but Redis's own.
		marker := filepath.Join(data, "untouched.marker")
		if err := os.WriteFile(marker, []byte("written before the drill"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := dataWitness(t, data)
		code, out, errOut := entrypoint(t, env, "drill", "--from", urlB)
		if code != 0 {
			t.Fatalf("drill: exit %d: %s %s\nentrypoint:\n%s", code, out, errOut, p.stderr)
		}
		if after := dataWitness(t, data); after != before {
			t.Errorf("the data directory changed during the drill:\nbefore %s\nafter  %s", before, after)
		}
		if ents, _ := os.ReadDir(filepath.Join(root, "drill")); len(ents) != 0 {
			t.Errorf("drill scratch left behind: %v", ents)
		}
	})

	_ = syscall.Kill(pid1, syscall.SIGTERM)
	if got := p.wait(t, 30*time.Second); got != 0 {
		t.Fatalf("exit %d; stderr:\n%s", got, p.stderr)
	}
	if strings.Contains(p.stderr.String(), "panic") {
		t.Errorf("stderr:\n%s", p.stderr)
	}
}

// dataWitness describes what a restore into dir would change: dir's inode,
// the marker file's inode and content, and the names of its entries other
// than the ones redis rewrites on its own (dump.rdb, temp-*.rdb).
func dataWitness(t *testing.T, dir string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "untouched.marker")
	var mst syscall.Stat_t
	if err := syscall.Stat(marker, &mst); err != nil {
		return "marker gone: " + err.Error()
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); n != "dump.rdb" && !strings.HasPrefix(n, "temp-") {
			names = append(names, n)
		}
	}
	return fmt.Sprintf("dir inode %d, marker inode %d sha256 %s, entries %v", st.Ino, mst.Ino, hex.EncodeToString(sum[:8]), names)
}
