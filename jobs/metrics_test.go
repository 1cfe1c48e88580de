package jobs

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/remote"
	"snapvisor/store"
)

// serveMetrics serves r (Listen + Serve, its metrics on a free 127.0.0.1
// port) until the test ends and returns a scrape of /metrics.
func serveMetrics(t *testing.T, r *Runner) func() string {
	t.Helper()
	l, err := r.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = r.Serve(ctx, l, time.Second) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})
	url := "http://" + l.metrics.Addr().String() + "/metrics"
	return func() string {
		c := http.Client{Timeout: 5 * time.Second}
		var page string
		testutil.Eventually(t, 10*time.Second, "metrics answer", func() bool {
			resp, err := c.Get(url)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			page = string(b)
			return err == nil && resp.StatusCode == http.StatusOK
		})
		return page
	}
}

// lineValue returns the value of the line of name (with labels) on page, "" when absent.
func lineValue(page, name string) string {
	for _, l := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestMetrics_Scrape: what alert rules and the dashboard read
// (images/monitoring) is on the metrics page: health's verdict and max age,
// evaluated at each scrape, and each remote's push results.
func TestMetrics_Scrape(t *testing.T) {
	ctx := context.Background()

	t.Run("health at scrape time", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Schedule: "@every 1h", Jitter: 5 * time.Minute, Freeze: FreezeNone, HookTimeout: time.Minute, FreezeTimeout: time.Minute,
			ControlSocket: filepath.Join(dir, "ctl.sock"), MetricsAddr: "127.0.0.1:0"}
		r := listenRunner(t, cfg, dir)
		scrape := serveMetrics(t, r)
		page := scrape()
		if v := lineValue(page, "snapvisor_healthy"); v != "0" {
			t.Errorf("snapvisor_healthy before any snapshot (no grace) = %q, want 0\n%s", v, page)
		}
		if v := lineValue(page, "snapvisor_health_max_age_seconds"); v != "7500" { // 2 x 1h + 5m jitter
			t.Errorf("snapvisor_health_max_age_seconds = %q, want 7500", v)
		}
		if res, err := r.Trigger(ctx, "test"); err != nil || res.Error != "" {
			t.Fatalf("snapshot: %v %s", err, res.Error)
		}
		if v := lineValue(scrape(), "snapvisor_healthy"); v != "1" {
			t.Errorf("snapvisor_healthy after a good snapshot = %q, want 1", v)
		}
	})

	t.Run("push results per remote", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := Config{Schedule: "@every 1h", Freeze: FreezeNone, HookTimeout: time.Minute, FreezeTimeout: time.Minute,
			ControlSocket: filepath.Join(dir, "ctl.sock"), MetricsAddr: "127.0.0.1:0"}
		r := listenRunner(t, cfg, dir)
		var remotes []remote.Remote
		for _, n := range []string{"good", "bad"} {
			s, err := store.Open(ctx, "file://"+filepath.Join(dir, n), store.Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			remotes = append(remotes, remote.Remote{Store: s})
		}
		// The bad remote's directory becomes a regular file: every write fails.
		bad := filepath.Join(dir, "bad")
		if err := os.RemoveAll(bad); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bad, []byte("not a directory"), 0o644); err != nil {
			t.Fatal(err)
		}
		r.SetRemotes(remotes)
		scrape := serveMetrics(t, r)
		for i := range 2 {
			if res, err := r.Trigger(ctx, "test"); err != nil || res.Error != "" {
				t.Fatalf("snapshot %d: %v %s", i, err, res.Error)
			}
		}
		page := scrape()
		good, badName := remotes[0].Name(), remotes[1].Name()
		for name, want := range map[string]string{
			`snapvisor_pushes_total{remote="` + good + `",result="ok"}`:        "2",
			`snapvisor_pushes_total{remote="` + good + `",result="failed"}`:    "0",
			`snapvisor_pushes_total{remote="` + badName + `",result="ok"}`:     "0",
			`snapvisor_pushes_total{remote="` + badName + `",result="failed"}`: "2",
			`snapvisor_push_last_ok{remote="` + good + `"}`:                    "1",
			`snapvisor_push_last_ok{remote="` + badName + `"}`:                 "0",
			"snapvisor_push_failures_total":                                    "2",
		} {
			if v := lineValue(page, name); v != want {
				t.Errorf("%s = %q, want %s", name, v, want)
			}
		}
		if t.Failed() {
			t.Logf("metrics:\n%s", page)
		}
	})
}
