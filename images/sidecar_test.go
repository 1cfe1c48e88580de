package images_test

import (
	"strings"
	"testing"
	"time"
)

// TestSidecarAndInitContainer: the pair of images/kubernetes/redis-sidecar-statefulset.yaml in
// the real engine, around an unmodified Redis image (the local base standing in for redis:7):
// Redis in one container; `entrypoint sidecar` in a second one sharing its network namespace and
// data volume, with its own backups volume. Data written, a snapshot taken by the sidecar (its
// pre-hook makes Redis save over the shared network), the data volume wiped, then
// `entrypoint restore-if-empty` (the init container) restores it before Redis starts again, and
// Redis has the data.
func TestSidecarAndInitContainer(t *testing.T) {
	need(t)
	svc, side, initc := prefix+"-sc-redis", prefix+"-sc-sidecar", prefix+"-sc-init"
	data, backups := prefix+"-sc-data", prefix+"-sc-backups"
	for _, c := range []string{svc, side, initc} {
		rmContainer(t, c)
	}
	volumes := func() {
		dkTry("volume", "rm", "-f", data)
		dkTry("volume", "rm", "-f", backups)
	}
	volumes()
	t.Cleanup(func() {
		for _, c := range []string{svc, side, initc} {
			dkTry("rm", "-f", "-v", c)
		}
		volumes()
	})
	startRedis := func() {
		t.Helper()
		dkTry("rm", "-f", svc)
		// The unmodified image: its own entrypoint and command, only the volume mounted.
		dk(t, "run", "-d", "--name", svc, "-v", data+":/data", redisBase,
			"redis-server", "--dir", "/data", "--protected-mode", "no", "--save", "")
		waitRedis(t, func(args ...string) (string, int) { return dkTry(append([]string{"exec", svc}, args...)...) })
	}
	startRedis()
	dk(t, "run", "-d", "--name", side, "--network", "container:"+svc,
		"-v", data+":/data", "-v", backups+":/backups",
		"-e", "SNAPVISOR_SCHEDULE=@yearly", "-e", "SNAPVISOR_LOG_FORMAT=console",
		"--entrypoint", "/usr/local/bin/entrypoint", redisImage, "sidecar")
	eventually(t, 30*time.Second, "the sidecar's control socket answers", func() (bool, string) {
		out, code := dkTry("exec", side, "entrypoint", "status")
		return code == 0, out
	})

	if out, code := dkTry("exec", svc, "redis-cli", "EVAL", populate, "0", "500"); code != 0 || out != "OK" {
		t.Fatalf("populate: %d %s", code, out)
	}
	out, code := dkTry("exec", side, "entrypoint", "snapshot")
	if code != 0 {
		t.Fatalf("entrypoint snapshot in the sidecar: exit %d\n%s", code, out)
	}
	t.Logf("the sidecar's snapshot: %s", lastLine(out))
	if out, code := dkTry("exec", side, "entrypoint", "health"); code != 0 {
		t.Errorf("health of the sidecar: exit %d: %s", code, out)
	}
	// A freeze needs the service as the entrypoint's child: refused in sidecar mode.
	out, code = dkTry("run", "--rm", "-e", "SNAPVISOR_FREEZE=stop", "--entrypoint", "/usr/local/bin/entrypoint", redisImage, "sidecar")
	if code != 78 || !strings.Contains(out, "SNAPVISOR_FREEZE") {
		t.Errorf("sidecar with SNAPVISOR_FREEZE=stop: exit %d, want 78 naming the variable\n%s", code, out)
	}

	// TERM ends the sidecar with 0 (docker stop).
	dk(t, "stop", "-t", "30", side)
	if c := dk(t, "inspect", "-f", "{{.State.ExitCode}}", side); c != "0" {
		logs, _ := dkTry("logs", side)
		t.Errorf("sidecar after docker stop: exit %s, want 0\n%s", c, logs)
	}

	// The data volume is lost; the backups volume survives.
	dk(t, "rm", "-f", svc, side)
	dk(t, "volume", "rm", data)
	dk(t, "volume", "create", data)
	// The init container, before Redis starts.
	out, code = dkTry("run", "--name", initc, "--user", "0", "-v", data+":/data", "-v", backups+":/backups",
		"--entrypoint", "/usr/local/bin/entrypoint", redisImage, "restore-if-empty")
	if code != 0 || !strings.Contains(out, "redis-") {
		t.Fatalf("restore-if-empty on the empty volume: exit %d, want 0 and the snapshot's name\n%s", code, out)
	}
	// Run again on the restored volume: nothing to do, still 0 (a pod restart).
	dkTry("rm", "-f", initc)
	out, code = dkTry("run", "--rm", "--user", "0", "-v", data+":/data", "-v", backups+":/backups",
		"--entrypoint", "/usr/local/bin/entrypoint", redisImage, "restore-if-empty")
	if code != 0 || !strings.Contains(out, "nothing to restore") {
		t.Errorf("restore-if-empty on restored data: exit %d, want 0 and nothing to do\n%s", code, out)
	}
	startRedis()
	if n, _ := dkTry("exec", svc, "redis-cli", "DBSIZE"); n != "500" {
		t.Errorf("Redis after the init container restored the volume: DBSIZE %s, want 500", n)
	}
}
