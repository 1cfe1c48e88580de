// End-to-end tests of the images, the compose files and the entrypoint inside a real Docker
// engine, which scripts/docker.sh installs and starts (its own data root and socket; see
// ../../shared/notes/containers.md). Nothing is pulled: the examples are built on a local Debian
// base made with debootstrap (scripts/docker.sh base, cached under ~/.cache/snapvisor-tools).
//
// SNAPVISOR_E2E_BINARY=path tests that static binary instead of building ./cmd/entrypoint.
// Skips (with the reason) when not root, with -short, or with SNAPVISOR_E2E_DOCKER=off; when the
// engine or the base image cannot be made, it skips outside CI and fails when CI=true.
// Cold (apt + debootstrap x2): about 3-4 minutes; warm: about 1 minute.
package images_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	docker      = "/usr/bin/docker" // the 20.10 client: a newer one may come first in PATH
	prefix      = "snapvisor-e2e"
	snapImage   = prefix + "/snapvisor:test"
	redisImage  = prefix + "/redis:test"
	pgBaseImage = prefix + "/postgres-base:test"
	pgImage     = prefix + "/postgres:test"
)

var (
	root       string   // repository root
	dockerEnv  []string // environment for docker and docker-compose
	startedEng bool     // this test process started the engine (and stops it)

	setupOnce sync.Once
	setupErr  error  // why the engine/images are unavailable
	setupHard bool   // setupErr is a failure, not a reason to skip
	binDir    string // holds the freshly built entrypoint
	redisBase string // local base image with redis-server
)

func TestMain(m *testing.M) {
	wd, _ := os.Getwd()
	root = filepath.Dir(wd)
	dockerEnv = append(os.Environ(), "COMPOSE_DOCKER_CLI_BUILD=0", "DOCKER_BUILDKIT=0")
	_ = os.Remove(skippedFile())
	code := m.Run()
	if startedEng {
		if out, err := exec.Command(filepath.Join(root, "scripts/docker.sh"), "stop").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "scripts/docker.sh stop: %v\n%s", err, out)
		}
	}
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func inCI() bool { v := os.Getenv("CI"); return v == "true" || v == "1" }

// need makes the engine, the base image and the snapvisor and Redis images once, or skips
// (fails in CI) with the reason.
func need(t *testing.T) {
	t.Helper()
	if testing.Short() {
		skipLoudly(t, "image e2e tests skipped with -short")
	}
	if os.Getenv("SNAPVISOR_E2E_DOCKER") == "off" {
		skipLoudly(t, "image e2e tests skipped: SNAPVISOR_E2E_DOCKER=off")
	}
	setupOnce.Do(setup)
	if setupErr != nil {
		if setupHard || inCI() {
			t.Fatalf("IMAGE E2E TESTS CANNOT RUN: %v", setupErr)
		}
		skipLoudly(t, fmt.Sprintf("IMAGE E2E TESTS SKIPPED (they fail when CI=true): %v", setupErr))
	}
}

// skippedFile records why the e2e tests were skipped; `make test` prints it after the run,
// because go test shows nothing but "ok" for a package whose tests skipped.
func skippedFile() string { return filepath.Join(root, "var", "e2e-skipped.txt") }

func skipLoudly(t *testing.T, why string) {
	t.Helper()
	_ = os.MkdirAll(filepath.Dir(skippedFile()), 0o755)
	_ = os.WriteFile(skippedFile(), []byte(why+"\n"), 0o644)
	t.Skip(why)
}

func setup() {
	if os.Geteuid() != 0 {
		setupErr = fmt.Errorf("not root: a Docker engine needs root here (run make test as root)")
		return
	}
	t0 := time.Now()
	sh := filepath.Join(root, "scripts/docker.sh")
	wasUp := exec.Command(sh, "status").Run() == nil
	if out, err := runIn(10*time.Minute, root, sh, "start"); err != nil {
		setupErr = fmt.Errorf("scripts/docker.sh start: %v\n%s", err, out)
		return
	}
	startedEng = !wasUp
	out, err := runIn(10*time.Second, root, sh, "env")
	if err != nil {
		setupErr = fmt.Errorf("scripts/docker.sh env: %v", err)
		return
	}
	dockerEnv = append(dockerEnv, strings.TrimSpace(out))

	// The binary under test is built from this tree, whatever bin/ holds.
	binDir, err = os.MkdirTemp("", "snapvisor-e2e-bin-")
	if err != nil {
		setupErr, setupHard = err, true
		return
	}
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	if b := os.Getenv("SNAPVISOR_E2E_BINARY"); b != "" {
		// a given static binary instead (a release build, or one built elsewhere)
		data, err := os.ReadFile(b)
		if err == nil {
			err = os.WriteFile(filepath.Join(binDir, "entrypoint"), data, 0o755)
		}
		if err != nil {
			setupErr, setupHard = fmt.Errorf("SNAPVISOR_E2E_BINARY: %v", err), true
			return
		}
	} else {
		build := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", filepath.Join(binDir, "entrypoint"), "./cmd/entrypoint")
		build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			setupErr, setupHard = fmt.Errorf("go build ./cmd/entrypoint: %v\n%s", err, out), true
			return
		}
	}
	if out, err = runIn(10*time.Minute, root, sh, "base", "redis-server"); err != nil {
		setupErr = fmt.Errorf("scripts/docker.sh base: %v\n%s", err, out)
		return
	}
	redisBase = lastLine(out)
	for _, b := range [][]string{
		{"build", "-q", "-t", snapImage, "-f", filepath.Join(root, "images/Dockerfile.prebuilt"), binDir},
		{"build", "-q", "-t", redisImage, "--build-arg", "BASE=" + redisBase, "--build-arg", "SNAPVISOR=" + snapImage, filepath.Join(root, "images/redis")},
	} {
		if out, err := runIn(5*time.Minute, root, docker, b...); err != nil {
			setupErr, setupHard = fmt.Errorf("docker %s: %v\n%s", strings.Join(b, " "), err, out), true
			return
		}
	}
	fmt.Fprintf(os.Stderr, "images e2e: engine, base and images ready in %v\n", time.Since(t0).Round(100*time.Millisecond))
}

// runIn runs a command with the docker environment and returns its combined output.
func runIn(timeout time.Duration, dir, name string, args ...string) (string, error) {
	return runEnv(timeout, dir, nil, name, args...)
}

// runEnv is runIn with extra environment variables.
func runEnv(timeout time.Duration, dir string, extra []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, append(slices.Clone(dockerEnv), extra...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %v)", err, timeout)
	}
	return b.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// dk runs docker and fails the test on error.
func dk(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runIn(2*time.Minute, root, docker, args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// dkTry runs docker and returns output and exit code (-1 when it could not run).
func dkTry(args ...string) (string, int) {
	out, err := runIn(2*time.Minute, root, docker, args...)
	if err == nil {
		return strings.TrimSpace(out), 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(out), ee.ExitCode()
	}
	return strings.TrimSpace(out) + "\n" + err.Error(), -1
}

func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last: %s)", what, within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rmContainer removes a container (and its anonymous volumes) when the test ends.
func rmContainer(t *testing.T, name string) {
	dkTry("rm", "-f", "-v", name)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := dkTry("logs", "--tail", "60", name)
			t.Logf("logs of %s:\n%s", name, out)
		}
		dkTry("rm", "-f", "-v", name)
	})
}

// populate sets e2e:1..e2e:ARGV[1] (DEBUG POPULATE is disabled by default in Redis 7).
const populate = "for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'e2e:' .. i, i) end return 'OK'"

func waitRedis(t *testing.T, exec func(...string) (string, int)) {
	t.Helper()
	eventually(t, 30*time.Second, "redis answers PING", func() (bool, string) {
		out, _ := exec("redis-cli", "PING")
		return out == "PONG", out
	})
}

// TestImageScratch: the snapvisor image holds only the static binary, at both paths.
func TestImageScratch(t *testing.T) {
	need(t)
	if n := dk(t, "image", "inspect", "-f", "{{len .RootFS.Layers}}", snapImage); n != "2" {
		t.Errorf("layers = %s, want 2 (/entrypoint and /usr/local/bin/entrypoint)", n)
	}
	for _, ep := range []string{"/entrypoint", "/usr/local/bin/entrypoint"} {
		out, code := dkTry("run", "--rm", "--network", "none", "--entrypoint", ep, snapImage, "version")
		if code != 0 || out == "" {
			t.Errorf("%s version: code %d, output %q", ep, code, out)
		}
	}
	if out := dk(t, "image", "inspect", "-f", "{{json .Config.Entrypoint}} {{json .Config.Cmd}}", snapImage); out != `["/entrypoint"] ["help"]` {
		t.Errorf("entrypoint/cmd = %s", out)
	}
}

// TestComposeBuild: the compose files' build sections build the Redis example as a user's
// `docker-compose up --build` would, here on the local base and snapvisor images.
func TestComposeBuild(t *testing.T) {
	need(t)
	img := prefix + "/redis-compose:test"
	for _, f := range []string{"docker-compose.yml", "docker-compose.minio.yml"} {
		env := []string{"REDIS_BASE=" + redisBase, "SNAPVISOR_IMAGE=" + snapImage, "REDIS_IMAGE=" + img}
		out, err := runEnv(5*time.Minute, filepath.Join(root, "images/compose"), env, "docker-compose",
			"-p", "snapvisore2ebuild", "-f", f, "build", "redis")
		if err != nil {
			t.Fatalf("docker-compose -f %s build: %v\n%s", f, err, out)
		}
		if id := dk(t, "image", "inspect", "-f", "{{.Id}}", img); id == "" {
			t.Fatalf("%s: no image %s after build", f, img)
		}
	}
	dkTry("image", "rm", "-f", img)
}

// TestRedisImageMetadata: exec-form ENTRYPOINT, STOPSIGNAL, HEALTHCHECK with entrypoint health.
func TestRedisImageMetadata(t *testing.T) {
	need(t)
	out := dk(t, "image", "inspect", "-f", "{{json .Config.Entrypoint}}|{{.Config.StopSignal}}|{{json .Config.Healthcheck.Test}}", redisImage)
	want := `["/usr/local/bin/entrypoint","--"]|SIGTERM|["CMD","/usr/local/bin/entrypoint","health"]`
	if out != want {
		t.Errorf("image config = %s\nwant           %s", out, want)
	}
}

// composeProject is a docker-compose project under test: one compose file, its environment, an
// external volume the test owns; everything is removed before and after the test.
type composeProject struct {
	t          *testing.T
	name, file string
	env        []string
}

func newComposeProject(t *testing.T, name, file, volume string, env []string) *composeProject {
	t.Helper()
	p := &composeProject{t: t, name: name, file: file, env: env}
	_, _ = p.run("down", "-v", "-t", "5")
	dkTry("volume", "rm", "-f", volume)
	dk(t, "volume", "create", volume)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run("logs", "--no-color")
			t.Logf("compose logs:\n%s", out)
		}
		_, _ = p.run("down", "-v", "-t", "5")
		dkTry("volume", "rm", "-f", volume)
	})
	return p
}

// run runs docker-compose with the project's name, file and environment.
func (p *composeProject) run(args ...string) (string, error) {
	full := append([]string{"-p", p.name, "-f", filepath.Join(root, "images/compose", p.file)}, args...)
	return runEnv(3*time.Minute, filepath.Join(root, "images/compose"), p.env, "docker-compose", full...)
}

// exec runs a command in the redis service and returns its output and exit code.
func (p *composeProject) exec(args ...string) (string, int) {
	out, err := p.run(append([]string{"exec", "-T", "redis"}, args...)...)
	if ee, ok := err.(*exec.ExitError); ok {
		return strings.TrimSpace(out), ee.ExitCode()
	} else if err != nil {
		return out + err.Error(), -1
	}
	return strings.TrimSpace(out), 0
}

// TestComposeRestoreAfterDownV: the compose walkthrough. Keys written, a snapshot taken with
// `docker exec ... entrypoint snapshot`, `docker-compose down -v` deletes the data volume (the
// backups volume is external and stays), `up` again: the keys are back, restored before Redis
// started (so before it accepted any connection).
func TestComposeRestoreAfterDownV(t *testing.T) {
	need(t)
	project, backups := "snapvisore2e", prefix+"-backups"
	// No final snapshot on stop: the restore must come from the snapshot that `docker exec`
	// asked for, taken while Redis ran (through the supervisor and its BGSAVE pre-hook).
	env := []string{"REDIS_IMAGE=" + redisImage, "REDIS_BACKUPS_VOLUME=" + backups,
		"SNAPVISOR_SCHEDULE=@daily", "SNAPVISOR_ON_EXIT=false"}
	p := newComposeProject(t, project, "docker-compose.yml", backups, env)
	compose, cexec := p.run, p.exec

	if out, err := compose("up", "-d", "--no-build"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	waitRedis(t, cexec)
	if out, code := cexec("redis-cli", "EVAL", populate, "0", "5000"); code != 0 || out != "OK" {
		t.Fatalf("populate: %d %s", code, out)
	}
	if out, code := cexec("redis-cli", "SET", "e2e:marker", "survives down -v"); code != 0 || out != "OK" {
		t.Fatalf("set: %d %s", code, out)
	}
	out, code := cexec("entrypoint", "snapshot")
	if code != 0 {
		t.Fatalf("entrypoint snapshot: exit %d\n%s", code, out)
	}
	t.Logf("entrypoint snapshot: %s", lastLine(out))
	if out, code := cexec("entrypoint", "list"); code != 0 || !strings.Contains(out, "redis-") {
		t.Fatalf("entrypoint list: %d\n%s", code, out)
	}

	if out, err := compose("down", "-v", "-t", "30"); err != nil {
		t.Fatalf("docker-compose down -v: %v\n%s", err, out)
	}
	if _, code := dkTry("volume", "inspect", project+"_data"); code == 0 {
		t.Fatalf("down -v left the data volume %s_data", project)
	}
	dk(t, "volume", "inspect", backups) // the backups survive

	t0 := time.Now()
	if out, err := compose("up", "-d", "--no-build"); err != nil {
		t.Fatalf("docker-compose up (after down -v): %v\n%s", err, out)
	}
	waitRedis(t, cexec)
	t.Logf("up after down -v: Redis answers %v after up", time.Since(t0).Round(10*time.Millisecond))
	if out, _ := cexec("redis-cli", "GET", "e2e:marker"); out != "survives down -v" {
		t.Errorf("e2e:marker = %q after restore", out)
	}
	if out, _ := cexec("redis-cli", "DBSIZE"); out != "5001" {
		t.Errorf("DBSIZE = %s after restore, want 5001", out)
	}
	logs, _ := compose("logs", "--no-color", "redis")
	restored := strings.Index(logs, "auto-restore: done")
	loaded := strings.Index(logs, "keys loaded: 5001")
	ready := strings.Index(logs, "Ready to accept connections")
	if restored < 0 || loaded < 0 || ready < 0 || !(restored < loaded && loaded < ready) {
		t.Errorf("want auto-restore done < Redis loaded 5001 keys < Ready to accept connections; got %d, %d, %d\n%s", restored, loaded, ready, logs)
	}
}

// TestDockerStop: SIGTERM goes through the entrypoint to Redis, which saves and exits 0; the
// final snapshot is taken; the container exits 0 well within the grace period.
func TestDockerStop(t *testing.T) {
	need(t)
	name := prefix + "-stop"
	rmContainer(t, name)
	dk(t, "run", "-d", "--name", name, "--network", "none", "-e", "SNAPVISOR_BACKUP=true", "-e", "SNAPVISOR_ON_EXIT=true",
		"-e", "SNAPVISOR_LOG_FORMAT=console", redisImage)
	waitRedis(t, func(args ...string) (string, int) { return dkTry(append([]string{"exec", name}, args...)...) })
	dk(t, "exec", name, "redis-cli", "SET", "k", "v")
	const grace = 30
	t0 := time.Now()
	dk(t, "stop", "-t", strconv.Itoa(grace), name)
	took := time.Since(t0)
	if code := dk(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
		t.Errorf("exit code %s, want 0", code)
	}
	if took > 10*time.Second {
		t.Errorf("docker stop took %v (grace %ds): the signal did not get through", took, grace)
	}
	logs, _ := dkTry("logs", name)
	for _, want := range []string{"Received SIGTERM", "DB saved on disk"} { // Redis's own lines
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q\n%s", want, logs)
		}
	}
	// The final cold snapshot is in the stopped container's /backups.
	out := t.TempDir()
	dk(t, "cp", name+":/backups", out)
	if finals, _ := filepath.Glob(filepath.Join(out, "backups", "redis-*.tar.gz.sha256")); len(finals) != 1 {
		t.Errorf("want one final snapshot in /backups after docker stop, found %v\n%s", finals, logs)
	}
	t.Logf("docker stop: %v, exit 0", took.Round(time.Millisecond))
}

// TestInvalidVariable: a bad schedule is a configuration error (78) naming the variable; Redis
// does not start.
func TestInvalidVariable(t *testing.T) {
	need(t)
	name := prefix + "-invalid"
	rmContainer(t, name)
	out, code := dkTry("run", "--name", name, "--network", "none", "-e", "SNAPVISOR_BACKUP=true",
		"-e", "SNAPVISOR_SCHEDULE=61 * * * *", redisImage)
	if code != 78 {
		t.Fatalf("exit code %d, want 78\n%s", code, out)
	}
	if !strings.Contains(out, "SNAPVISOR_SCHEDULE") || !strings.Contains(out, "61 * * * *") {
		t.Errorf("message does not name the variable and value:\n%s", out)
	}
	if strings.Contains(out, "Redis is starting") {
		t.Errorf("Redis started despite the configuration error")
	}
	t.Logf("exit 78: %s", lastLine(out))
}

// TestHealth: unhealthy while no snapshot exists, healthy once one does.
func TestHealth(t *testing.T) {
	need(t)
	name := prefix + "-health"
	rmContainer(t, name)
	dk(t, "run", "-d", "--name", name, "--network", "none", "--health-interval", "1s", "--health-retries", "1",
		"--health-start-period", "1ms", "-e", "SNAPVISOR_BACKUP=true", "-e", "SNAPVISOR_SCHEDULE=@hourly", redisImage)
	health := func() (bool, string) {
		s := dk(t, "inspect", "-f", "{{.State.Health.Status}}", name)
		return s == "healthy", s
	}
	eventually(t, 20*time.Second, "unhealthy without a snapshot", func() (bool, string) {
		_, s := health()
		return s == "unhealthy", s
	})
	if out, code := dkTry("exec", name, "entrypoint", "snapshot"); code != 0 {
		t.Fatalf("entrypoint snapshot: %d\n%s", code, out)
	}
	t0 := time.Now()
	eventually(t, 20*time.Second, "healthy once a snapshot exists", health)
	t.Logf("healthy %v after the snapshot", time.Since(t0).Round(100*time.Millisecond))
}

// TestPostgresColdSnapshotRestore: images/postgres (freeze=stop) on a local Debian PostgreSQL
// base: rows written, snapshot, container and data volume destroyed, a new container on an empty
// volume restores PGDATA, PostgreSQL starts from a clean shutdown state and has the rows.
func TestPostgresColdSnapshotRestore(t *testing.T) {
	need(t)
	sh := filepath.Join(root, "scripts/docker.sh")
	out, err := runIn(10*time.Minute, root, sh, "base", "postgresql")
	if err != nil {
		if inCI() {
			t.Fatalf("scripts/docker.sh base postgresql: %v\n%s", err, out)
		}
		skipLoudly(t, fmt.Sprintf("no PostgreSQL base image: %v\n%s", err, out))
	}
	dk(t, "build", "-q", "-t", pgBaseImage, "--build-arg", "BASE="+lastLine(out), filepath.Join(root, "images/testdata/postgres-base"))
	dk(t, "build", "-q", "-t", pgImage, "--build-arg", "BASE="+pgBaseImage, "--build-arg", "SNAPVISOR="+snapImage, filepath.Join(root, "images/postgres"))

	name, data, backups := prefix+"-pg", prefix+"-pgdata", prefix+"-pgbackups"
	for _, v := range []string{data, backups} {
		dkTry("volume", "rm", "-f", v)
		v := v
		t.Cleanup(func() { dkTry("volume", "rm", "-f", v) })
	}
	rmContainer(t, name)
	run := func() {
		dk(t, "run", "-d", "--name", name, "--network", "none", "-e", "SNAPVISOR_BACKUP=true", "-e", "SNAPVISOR_SCHEDULE=@daily",
			"-e", "SNAPVISOR_LOG_FORMAT=console", "-v", data+":/var/lib/postgresql/data", "-v", backups+":/backups", pgImage)
		eventually(t, 60*time.Second, "PostgreSQL accepts connections", func() (bool, string) {
			out, code := dkTry("exec", name, "psql", "-X", "-U", "postgres", "-Atc", "SELECT 1")
			return code == 0 && out == "1", out
		})
	}
	psql := func(sql string) string {
		t.Helper()
		return dk(t, "exec", name, "psql", "-X", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-Atc", sql)
	}
	run()
	psql("CREATE TABLE e2e (id int PRIMARY KEY, v text)")
	psql("INSERT INTO e2e SELECT g, md5(g::text) FROM generate_series(1, 10000) g")
	want := psql("SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM e2e")
	t0 := time.Now()
	if out, code := dkTry("exec", name, "entrypoint", "snapshot"); code != 0 {
		t.Fatalf("entrypoint snapshot: %d\n%s", code, out)
	}
	t.Logf("freeze=stop snapshot took %v", time.Since(t0).Round(10*time.Millisecond))
	// PostgreSQL is back after the cold snapshot.
	eventually(t, 30*time.Second, "PostgreSQL back after the snapshot", func() (bool, string) {
		out, code := dkTry("exec", name, "psql", "-X", "-U", "postgres", "-Atc", "SELECT count(*) FROM e2e")
		return code == 0 && out == "10000", out
	})

	// Data loss: the container is killed (no final snapshot) and its data volume deleted.
	dk(t, "rm", "-f", name)
	dk(t, "volume", "rm", data)
	run()
	if got := psql("SELECT count(*) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM e2e"); got != want {
		t.Errorf("after restore: %s, want %s", got, want)
	}
	logs, _ := dkTry("logs", name)
	if !strings.Contains(logs, "auto-restore: done") {
		t.Errorf("no auto-restore in the logs:\n%s", logs)
	}
	// A cold copy: PostgreSQL finds a cleanly shut down cluster, no crash recovery.
	if !strings.Contains(logs, "database system was shut down at") || strings.Contains(logs, "automatic recovery in progress") {
		t.Errorf("restored cluster was not cold-consistent:\n%s", logs)
	}
}

// TestComposeMinIO: the same walkthrough with docker-compose.minio.yml, the restore coming from
// MinIO after `down -v` removed data and local backups. Runs once the entrypoint has remote
// stores (SNAPVISOR_REMOTES) and a MinIO binary is installed (scripts/servers.sh install minio).
func TestComposeMinIO(t *testing.T) {
	need(t)
	minio, err := exec.Command(filepath.Join(root, "scripts/servers.sh"), "path", "minio").Output()
	mbin := strings.TrimSpace(string(minio))
	if err == nil && mbin != "" {
		_, err = os.Stat(mbin)
	}
	if err != nil || mbin == "" {
		if inCI() {
			t.Fatalf("no MinIO binary %q (scripts/servers.sh install minio): %v", mbin, err)
		}
		skipLoudly(t, fmt.Sprintf("no MinIO binary %q (scripts/servers.sh install minio): %v", mbin, err))
	}
	// MinIO as a FROM-scratch image from the static binary (nothing can be pulled).
	ctxDir := t.TempDir()
	if err := os.Link(mbin, filepath.Join(ctxDir, "minio")); err != nil {
		b, err := os.ReadFile(mbin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ctxDir, "minio"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	df := "FROM scratch\nCOPY minio /minio\nENV HOME=/data\nENTRYPOINT [\"/minio\"]\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	minioImage := prefix + "/minio:test"
	dk(t, "build", "-q", "-t", minioImage, ctxDir)

	project, mvol := "snapvisore2eminio", prefix+"-minio-data"
	env := []string{"REDIS_IMAGE=" + redisImage, "MINIO_IMAGE=" + minioImage, "MINIO_VOLUME=" + mvol,
		"SNAPVISOR_SCHEDULE=@daily", "SNAPVISOR_ON_EXIT=false"}
	p := newComposeProject(t, project, "docker-compose.minio.yml", mvol, env)
	compose, cexec := p.run, p.exec
	if out, err := compose("up", "-d", "--no-build"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	waitRedis(t, cexec)
	if out, code := cexec("redis-cli", "EVAL", populate, "0", "1000"); code != 0 || out != "OK" {
		t.Fatalf("populate: %d %s", code, out)
	}
	if out, code := cexec("redis-cli", "SET", "e2e:marker", "from minio"); code != 0 || out != "OK" {
		t.Fatalf("SET: %d %s", code, out)
	}
	// MinIO may still be starting: the snapshot (and its push) is retried by the entrypoint.
	if out, code := cexec("entrypoint", "snapshot"); code != 0 {
		t.Fatalf("entrypoint snapshot: %d\n%s", code, out)
	}
	if out, err := compose("down", "-v", "-t", "30"); err != nil {
		t.Fatalf("down -v: %v\n%s", err, out)
	}
	for _, v := range []string{project + "_data", project + "_backups"} {
		if _, code := dkTry("volume", "inspect", v); code == 0 {
			t.Fatalf("down -v left %s", v)
		}
	}
	if out, err := compose("up", "-d", "--no-build"); err != nil {
		t.Fatalf("docker-compose up (after down -v): %v\n%s", err, out)
	}
	waitRedis(t, cexec)
	if out, _ := cexec("redis-cli", "GET", "e2e:marker"); out != "from minio" {
		t.Errorf("e2e:marker = %q after restore from MinIO", out)
	}
	if out, _ := cexec("redis-cli", "DBSIZE"); out != "1001" {
		t.Errorf("DBSIZE = %s after restore from MinIO, want 1001", out)
	}
	// The local backups volume is gone: the data can only have come from MinIO,
	// and it was in place before Redis accepted a connection.
	logs, _ := compose("logs", "--no-color", "redis")
	restored := strings.LastIndex(logs, "restore: done") // local ("auto-restore: done") or remote
	ready := strings.LastIndex(logs, "Ready to accept connections")
	if restored < 0 || ready < 0 || restored > ready {
		t.Errorf("want auto-restore done before Redis is ready to accept connections; got %d, %d\n%s", restored, ready, logs)
	}
}

// TestFreshExt4Volume is the most common new node of all: the data volume is a brand-new ext4
// file system (an EBS/PD/Ceph volume, here a loop-mounted image), which holds only lost+found,
// owned by root and unreadable for the unprivileged Redis. The old node pushed a good snapshot to
// a remote (file://, a host directory shared by both containers); the new node has a fresh local
// backups volume too. The entrypoint must count the volume as empty, restore the newest good
// snapshot from the remote into it before Redis starts, leave lost+found where the file system
// keeps it, snapshot without it, and never rotate good data away.
func TestFreshExt4Volume(t *testing.T) {
	need(t)
	uid := dk(t, "run", "--rm", "--network", "none", "--entrypoint", "id", redisImage, "-u")
	gid := dk(t, "run", "--rm", "--network", "none", "--entrypoint", "id", redisImage, "-g")
	remote := t.TempDir()
	if err := os.Chmod(remote, 0o777); err != nil { // t.TempDir is 0700 root: the redis user writes here
		t.Fatal(err)
	}
	remoteDir := filepath.Join(remote, "store")
	if err := os.Mkdir(remoteDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", uid+":"+gid, remoteDir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	env := []string{"-e", "SNAPVISOR_BACKUP=true", "-e", "SNAPVISOR_REMOTES=file:///remote",
		"-e", "SNAPVISOR_KEEP=2", "-e", "SNAPVISOR_LOG_FORMAT=console", "-e", "SNAPVISOR_CONTROL_SOCKET=/tmp/ctl/snapvisor.sock"}

	// The old node: Redis with data, a snapshot pushed to the remote.
	old := prefix + "-ext4-old"
	rmContainer(t, old)
	dk(t, append(append([]string{"run", "-d", "--name", old, "--network", "none", "-v", remoteDir + ":/remote"}, env...),
		"-e", "SNAPVISOR_SCHEDULE=@daily", redisImage)...)
	oexec := func(args ...string) (string, int) { return dkTry(append([]string{"exec", old}, args...)...) }
	waitRedis(t, oexec)
	if out, code := oexec("redis-cli", "EVAL", populate, "0", "20000"); code != 0 || out != "OK" {
		t.Fatalf("populate: %d %s", code, out)
	}
	if out, code := oexec("redis-cli", "SET", "e2e:marker", "survives a new node"); code != 0 || out != "OK" {
		t.Fatalf("set: %d %s", code, out)
	}
	if out, code := oexec("entrypoint", "snapshot"); code != 0 {
		t.Fatalf("entrypoint snapshot: %d\n%s", code, out)
	}
	// The old node is drained (its lease on the remote released at the clean
	// exit), then gone, and its volumes with it.
	dk(t, "stop", old)
	dk(t, "rm", "-f", "-v", old)
	good := remoteSnapshots(t, remoteDir)
	if len(good) != 1 {
		t.Fatalf("remote holds %v, want the snapshot of the old node", good)
	}
	goodSize := good[0].size

	// The new node: a fresh ext4 volume, as the operator (or Kubernetes' fsGroup) hands it to a
	// non-root service: its root owned by the service, lost+found left as mkfs made it.
	img := filepath.Join(t.TempDir(), "vol.img")
	mnt := t.TempDir()
	for _, c := range [][]string{{"truncate", "-s", "64M", img}, {"mkfs.ext4", "-q", "-F", img}, {"mount", "-o", "loop", img, mnt}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	if out, err := exec.Command("chown", uid+":"+gid, mnt).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	lf, err := os.Stat(filepath.Join(mnt, "lost+found"))
	if err != nil || lf.Mode().Perm() != 0o700 {
		t.Fatalf("mkfs.ext4 made no 0700 lost+found: %v %v", lf, err)
	}

	name := prefix + "-ext4-new"
	rmContainer(t, name)
	dk(t, append(append([]string{"run", "-d", "--name", name, "--network", "none", "-v", mnt + ":/data", "-v", remoteDir + ":/remote"}, env...),
		"-e", "SNAPVISOR_SCHEDULE=@every 2s", redisImage)...)
	nexec := func(args ...string) (string, int) { return dkTry(append([]string{"exec", name}, args...)...) }
	waitRedis(t, nexec)
	if out, _ := nexec("redis-cli", "GET", "e2e:marker"); out != "survives a new node" {
		logs, _ := dkTry("logs", name)
		t.Fatalf("e2e:marker = %q on the new node: the fresh volume was not restored\n%s", out, logs)
	}
	if out, _ := nexec("redis-cli", "DBSIZE"); out != "20001" {
		t.Errorf("DBSIZE = %s on the new node, want 20001", out)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "lost+found")); err != nil || !fi.IsDir() {
		t.Errorf("lost+found is gone from the volume root after the restore: %v", err)
	}
	// Several scheduled runs with KEEP=2: rotation goes through the remote's history, and every
	// snapshot it leaves holds the data (nothing good is rotated away for an empty one).
	eventually(t, 40*time.Second, "the new node's own snapshots replace the old node's on the remote", func() (bool, string) {
		now := remoteSnapshots(t, remoteDir)
		for _, s := range now {
			if s.name == good[0].name {
				return false, fmt.Sprint(now)
			}
		}
		return len(now) >= 2, fmt.Sprint(now)
	})
	// The schedule goes on every 2 s, and its rotation would delete the
	// oldest snapshot listed here before tar reads it (a tar "Cannot open"
	// failure): the node is paused, its processes frozen, for the checks.
	dk(t, "pause", name)
	t.Cleanup(func() { dkTry("unpause", name) }) // before its removal
	for _, s := range remoteSnapshots(t, remoteDir) {
		if s.size < goodSize/2 {
			t.Errorf("remote snapshot %s is %d bytes, the good ones were %d: rotation kept an empty snapshot", s.name, s.size, goodSize)
		}
		out, err := exec.Command("tar", "-tzf", filepath.Join(remoteDir, s.name)).CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tzf %s: %v\n%s", s.name, err, out)
		}
		list := string(out)
		if !strings.Contains(list, "data/dump.rdb") || strings.Contains(list, "lost+found") {
			t.Errorf("snapshot %s: want data/dump.rdb and no lost+found, got\n%s", s.name, list)
		}
	}
}

type remoteSnapshot struct {
	name string
	size int64
}

// remoteSnapshots lists the complete snapshots (archive and .sha256) in a file:// remote, newest first.
func remoteSnapshots(t *testing.T, dir string) []remoteSnapshot {
	t.Helper()
	sums, err := filepath.Glob(filepath.Join(dir, "redis-*.tar.gz.sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []remoteSnapshot
	for _, s := range sums {
		fi, err := os.Stat(strings.TrimSuffix(s, ".sha256"))
		if err != nil {
			continue
		}
		out = append(out, remoteSnapshot{fi.Name(), fi.Size()})
	}
	slices.SortFunc(out, func(a, b remoteSnapshot) int { return strings.Compare(b.name, a.name) })
	return out
}
