package images_test

// Tests of images/monitoring: the alert rules with promtool, and the dashboard and rules in a
// real Prometheus (Debian package prometheus, scripts/deps.sh) scraping a running entrypoint.
// No Docker engine: the entrypoint runs on the host.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"snapvisor/internal/testutil"
	"snapvisor/store/storetest"
)

const (
	alertsFile     = "monitoring/alerts.yml"
	alertsTestFile = "monitoring/alerts_test.yml"
	dashboardFile  = "monitoring/grafana-dashboard.json"
)

// buildEntrypoint builds ./cmd/entrypoint from this tree into a temporary directory, as the
// e2e setup does, and returns its path.
func buildEntrypoint(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "entrypoint")
	gobin := os.Getenv("GO")
	if gobin == "" {
		gobin = "go"
	}
	build := exec.Command(gobin, "build", "-trimpath", "-o", bin, "./cmd/entrypoint")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/entrypoint: %v\n%s", err, out)
	}
	return bin
}

// TestAlerts_Promtool: the rules are valid, and their unit tests (each alert fires on synthetic
// series and clears again) pass; a rule test that expects the wrong thing fails, so promtool
// really evaluates them.
func TestAlerts_Promtool(t *testing.T) {
	promtool := testutil.RequireTool(t, "promtool")
	dir := filepath.Join(root, "images")
	t.Run("CheckRules", func(t *testing.T) {
		if out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, alertsFile)).CombinedOutput(); err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
	})
	t.Run("TestRules", func(t *testing.T) {
		cmd := exec.Command(promtool, "test", "rules", filepath.Base(alertsTestFile))
		cmd.Dir = filepath.Join(dir, "monitoring")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool test rules: %v\n%s", err, out)
		}
	})
	t.Run("EveryAlertTested", func(t *testing.T) {
		rules, _ := os.ReadFile(filepath.Join(dir, alertsFile))
		tests, _ := os.ReadFile(filepath.Join(dir, alertsTestFile))
		alerts := regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(rules), -1)
		if len(alerts) == 0 {
			t.Fatal("no alert in " + alertsFile)
		}
		for _, a := range alerts {
			// A group that fires it (exp_labels under its name) and one evaluation expecting none.
			name := a[1]
			if !strings.Contains(string(tests), "- name: "+name+"\n") ||
				!strings.Contains(string(tests), "alertname: "+name+", exp_alerts: []") ||
				!strings.Contains(string(tests), "alertname: "+name+"\n") {
				t.Errorf("%s: no test group in %s that fires and clears it", name, alertsTestFile)
			}
		}
	})
	t.Run("WrongExpectationFails", func(t *testing.T) {
		tmp := t.TempDir()
		b, err := os.ReadFile(filepath.Join(dir, alertsFile))
		if err != nil {
			t.Fatal(err)
		}
		storetest.MustWrite(t, filepath.Join(tmp, "alerts.yml"), b)
		tests, err := os.ReadFile(filepath.Join(dir, alertsTestFile))
		if err != nil {
			t.Fatal(err)
		}
		// The drill alert expected to have cleared while the drill still fails.
		bad := strings.Replace(string(tests), "{eval_time: 25m, alertname: SnapvisorDrillFailed", "{eval_time: 18m, alertname: SnapvisorDrillFailed", 1)
		if bad == string(tests) {
			t.Fatal("the drill group's clearing evaluation is not in " + alertsTestFile)
		}
		storetest.MustWrite(t, filepath.Join(tmp, "alerts_test.yml"), []byte(bad))
		cmd := exec.Command(promtool, "test", "rules", "alerts_test.yml")
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("promtool test rules passed a wrong expectation:\n%s", out)
		}
	})
}

// prometheus is a Prometheus server under test, on 127.0.0.1.
type prometheus struct {
	base string
	c    http.Client
}

// startPrometheus runs prometheus with cfg (prometheus.yml) until the test ends, its data in
// a temporary directory, and waits until it is ready.
func startPrometheus(t *testing.T, cfg string) *prometheus {
	t.Helper()
	bin := testutil.RequireTool(t, "prometheus")
	dir := t.TempDir()
	storetest.MustWrite(t, filepath.Join(dir, "prometheus.yml"), []byte(cfg))
	addr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	out, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Logf("prometheus log:\n%s", b)
		}
	})
	p := &prometheus{base: "http://" + addr, c: http.Client{Timeout: 5 * time.Second}}
	testutil.Eventually(t, 60*time.Second, "prometheus ready", func() bool {
		select {
		case <-exited:
			t.Fatal("prometheus exited")
		default:
		}
		resp, err := p.c.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// get decodes the JSON answer of the API path into v; false when it cannot be had.
func (p *prometheus) get(path string, v any) error {
	resp, err := p.c.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// query evaluates expr now; it returns the number of series or samples in the result.
func (p *prometheus) query(expr string) (int, error) {
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(expr), &r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("%s: %s", r.Status, r.Error)
	}
	if r.Data.ResultType == "scalar" {
		return 1, nil
	}
	var series []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return 0, err
	}
	return len(series), nil
}

// grafanaVars are what Grafana puts for the dashboard's variables and its built-in
// intervals in a panel's expression: every instance and remote ("All", the variables'
// allValue), and intervals that hold several 1 s scrapes.
var grafanaVars = strings.NewReplacer(
	"${__rate_interval}", "1m", "$__rate_interval", "1m",
	"${__interval}", "15s", "$__interval", "15s",
	"${__range}", "5m", "$__range", "5m",
	"${instance}", ".*", "$instance", ".*",
	"${remote}", ".*", "$remote", ".*",
)

// dashboardExprs returns every panel target's expression (rows' nested panels too) and the
// metric selectors of the query variables (label_values(SELECTOR, label)), Grafana variables
// substituted; it fails on a $ left unsubstituted.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "images", dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: panel: %v", dashboardFile, err)
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("%s: panel %q has a target without expr", dashboardFile, p.Title)
				}
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil { // the older form: a plain string
			_ = json.Unmarshal(v.Query, &q.Query)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("%s: variable query %q is not label_values(SELECTOR, label)", dashboardFile, q.Query)
			continue
		}
		exprs = append(exprs, m[1])
	}
	for i, e := range exprs {
		exprs[i] = grafanaVars.Replace(e)
		if strings.Contains(exprs[i], "$") {
			t.Errorf("%s: expression %q: a Grafana variable this test does not know", dashboardFile, e)
		}
	}
	if len(exprs) == 0 {
		t.Fatalf("%s: no panel expressions", dashboardFile)
	}
	return exprs
}

// TestDashboard_Prometheus: a real Prometheus scrapes a running entrypoint (two file://
// remotes) every second and loads the alert rules; after two snapshots, a restore drill and a
// replication, every expression of the dashboard returns data, and every rule is loaded and
// evaluates with health "ok".
func TestDashboard_Prometheus(t *testing.T) {
	exprs := dashboardExprs(t)
	testutil.RequireTool(t, "prometheus")
	bin := buildEntrypoint(t)

	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	storetest.MustWrite(t, filepath.Join(data, "dump.rdb"), []byte("REDIS0011 precious"))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", storetest.FreePort(t))
	env := append(os.Environ(), "SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE="+data, "SNAPVISOR_DIR="+filepath.Join(tmp, "backups"),
		"SNAPVISOR_NAME=db", "SNAPVISOR_SCHEDULE=@daily", "SNAPVISOR_MIN_INTERVAL=0s", "SNAPVISOR_METRICS_ADDR="+metricsAddr,
		"SNAPVISOR_CONTROL_SOCKET="+filepath.Join(tmp, "ctl.sock"),
		"SNAPVISOR_REMOTES=file://"+filepath.Join(tmp, "remote-a")+",file://"+filepath.Join(tmp, "remote-b"),
		"SNAPVISOR_DRILL_COMMAND=test -s $SNAPVISOR_DRILL_DIR/data/dump.rdb")

	ctx, cancel := context.WithCancel(context.Background())
	svc := exec.CommandContext(ctx, bin, "--", "sleep", "1000")
	svc.Env = env
	var logs strings.Builder
	svc.Stdout, svc.Stderr = &logs, &logs
	svc.Cancel = func() error { return svc.Process.Signal(syscall.SIGTERM) }
	svc.WaitDelay = 15 * time.Second
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = svc.Wait()
		if t.Failed() {
			t.Logf("entrypoint log:\n%s", logs.String())
		}
	})
	sub := func(args ...string) {
		t.Helper()
		c := exec.Command(bin, args...)
		c.Env = env
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("entrypoint %s: %v\n%s\nentrypoint log:\n%s", strings.Join(args, " "), err, out, logs.String())
		}
	}
	testutil.Eventually(t, 30*time.Second, "the control socket answers", func() bool {
		c := exec.Command(bin, "status")
		c.Env = env
		return c.Run() == nil
	})

	rules, err := filepath.Abs(filepath.Join(root, "images", alertsFile))
	if err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: snapvisor
    static_configs: [{targets: [%q]}]
`, rules, metricsAddr))

	sub("snapshot")
	sub("snapshot")
	sub("drill")
	sub("replicate")

	testutil.Eventually(t, 60*time.Second, "two snapshots scraped", func() bool {
		n, err := prom.query(`snapvisor_snapshots_success_total >= 2`)
		return err == nil && n == 1
	})
	for _, e := range exprs {
		var last error
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, err := prom.query(e)
			if err == nil && n > 0 {
				break
			}
			last = err
			if err == nil {
				last = fmt.Errorf("no data")
			}
			if time.Now().After(deadline) {
				t.Errorf("dashboard expression %q: %v", e, last)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	var want []string
	b, _ := os.ReadFile(rules)
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(b), -1) {
		want = append(want, m[1])
	}
	var got []string
	testutil.Eventually(t, 30*time.Second, "every rule loaded and evaluated with health ok", func() bool {
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := prom.get("/api/v1/rules", &r); err != nil {
			return false
		}
		got = got[:0]
		for _, g := range r.Data.Groups {
			for _, rl := range g.Rules {
				if rl.Health != "ok" {
					t.Logf("rule %s: health %q %s", rl.Name, rl.Health, rl.LastError)
					return false
				}
				got = append(got, rl.Name)
			}
		}
		return len(got) == len(want)
	})
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("rules loaded %v, want %v", got, want)
	}
}
