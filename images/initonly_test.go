package images_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	snapInitImage = prefix + "/snapvisor:init-test"    // images/Dockerfile.prebuilt with BIN=entrypoint-init
	initUserImage = prefix + "/init-only-service:test" // a Debian base with only the init-only entrypoint
)

// TestImageInitOnly: the init-only image (tag beside the full one, built the same way with the
// init-only binary) holds only that binary; copied into a service image it is PID 1 in a real
// container: it passes the service's exit code through, forwards docker stop's TERM, and
// refuses SNAPVISOR_BACKUP=true (78) before the service starts.
func TestImageInitOnly(t *testing.T) {
	need(t)
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	build := exec.Command(gobin, "build", "-tags", "initonly", "-trimpath", "-ldflags", "-s -w -X main.version=e2e",
		"-o", filepath.Join(binDir, "entrypoint-init"), "./cmd/entrypoint")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags initonly: %v\n%s", err, out)
	}
	dk(t, "build", "-q", "-t", snapInitImage, "--build-arg", "BIN=entrypoint-init", "-f", filepath.Join(root, "images/Dockerfile.prebuilt"), binDir)
	if out, code := dkTry("run", "--rm", "--network", "none", snapInitImage, "version"); code != 0 || !strings.Contains(out, "e2e") {
		t.Fatalf("init-only image version: code %d, output %q", code, out)
	}
	if out, code := dkTry("run", "--rm", "--network", "none", snapInitImage, "help"); code != 0 || !strings.Contains(out, "init-only build") {
		t.Errorf("init-only image help: code %d, output %q", code, out)
	}

	// A service image as a user writes it: COPY --from the init-only image.
	ctxDir := t.TempDir()
	df := "ARG BASE\nARG SNAPVISOR\nFROM ${SNAPVISOR} AS snapvisor\nFROM ${BASE}\n" +
		"COPY --from=snapvisor /entrypoint /usr/local/bin/entrypoint\n" +
		"ENTRYPOINT [\"/usr/local/bin/entrypoint\", \"--\"]\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	dk(t, "build", "-q", "-t", initUserImage, "--build-arg", "BASE="+redisBase, "--build-arg", "SNAPVISOR="+snapInitImage, ctxDir)

	t.Run("exit code passed through", func(t *testing.T) {
		out, code := dkTry("run", "--rm", "--network", "none", initUserImage, "sh", "-c", "exit 7")
		if code != 7 {
			t.Fatalf("exit code %d, want 7\n%s", code, out)
		}
	})
	t.Run("docker stop's TERM forwarded", func(t *testing.T) {
		name := prefix + "-init-only-stop"
		rmContainer(t, name)
		dk(t, "run", "-d", "--name", name, "--network", "none", initUserImage,
			"sh", "-c", "trap 'exit 42' TERM; touch /tmp/ready; while :; do sleep 0.1; done")
		eventually(t, 30*time.Second, "service ready", func() (bool, string) {
			out, code := dkTry("exec", name, "test", "-e", "/tmp/ready")
			return code == 0, out
		})
		if pid1 := dk(t, "exec", name, "cat", "/proc/1/comm"); pid1 != "entrypoint" {
			t.Errorf("PID 1 is %q, want entrypoint", pid1)
		}
		t0 := time.Now()
		dk(t, "stop", "-t", "20", name)
		if took := time.Since(t0); took > 10*time.Second {
			t.Errorf("docker stop took %v: the TERM did not reach the service", took)
		}
		if code := dk(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "42" {
			t.Errorf("exit code %s, want 42 (the service's, after the forwarded TERM)", code)
		}
	})
	t.Run("SNAPVISOR_BACKUP=true exits 78 before the service", func(t *testing.T) {
		out, code := dkTry("run", "--rm", "--network", "none", "-e", "SNAPVISOR_BACKUP=true", initUserImage,
			"sh", "-c", "echo service-started")
		if code != 78 || !strings.Contains(out, "SNAPVISOR_BACKUP") || !strings.Contains(out, "full `entrypoint` binary") {
			t.Fatalf("exit code %d, want 78 naming SNAPVISOR_BACKUP and the full binary\n%s", code, out)
		}
		if strings.Contains(out, "service-started") {
			t.Error("the service started")
		}
	})
}
