// Command benchinit measures snapvisor's entrypoint, and its init-only build
// (entrypoint-init, issue 18), against Debian's tini and dumb-init, side by
// side in one run (issue 2, "Benchmark"):
//
//  1. start-to-exit wall time of `INIT -- true`, runs interleaved round-robin;
//  2. VmRSS and VmHWM of the init process while its service sleeps;
//  3. latency from a signal sent to the init to the service receiving it:
//     SIGTERM to a fresh init+service each time, and SIGUSR1 repeated to one
//     long-lived init+service (forwarding latency alone).
//
// It prints a markdown table to stdout and writes it to -out.
//
//	go run ./scripts/benchinit -entrypoint bin/entrypoint -init bin/entrypoint-init -runs 300 -out var/bench-init.md
//
// The inits run as plain children of this program (not as PID 1); tini gets -s
// so it registers as a child subreaper like snapvisor does. snapvisor runs with
// SNAPVISOR_LOG_LEVEL=warn so it does not write its info lines for every run.
// The service for the signal figures is this same binary re-executed in a
// service mode: it reports readiness and the CLOCK_MONOTONIC time at which each
// signal reached it through a FIFO, and the same service is used for every init.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const serviceMode = "__benchinit_service" // argv[1] that turns this binary into the test service
const exitMode = "__benchinit_exit"       // argv[1] that exits at once (Go runtime start-up floor)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case serviceMode:
			serviceMain(os.Args[2:])
			return
		case exitMode:
			return
		}
	}
	os.Exit(benchMain())
}

// ---------------------------------------------------------------------------
// The service: the same program under every init.

// serviceMain opens the FIFO, installs its signal handlers, reports "R pid",
// then reports "S pid signo monotonic-ns" for every signal it receives and
// exits 0 after TERM or INT.
func serviceMain(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "service: want FIFO path")
		os.Exit(2)
	}
	f, err := os.OpenFile(args[0], os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(2)
	}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGUSR1)
	pid := os.Getpid()
	// Each message is one write(2) of less than PIPE_BUF bytes: atomic on a FIFO.
	_, _ = f.Write([]byte("R " + strconv.Itoa(pid) + "\n"))
	buf := make([]byte, 0, 64)
	for s := range ch {
		now := monoNow()
		sig := s.(syscall.Signal)
		buf = append(buf[:0], "S "...)
		buf = strconv.AppendInt(buf, int64(pid), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, int64(sig), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, now, 10)
		buf = append(buf, '\n')
		_, _ = f.Write(buf)
		if sig == unix.SIGTERM || sig == unix.SIGINT {
			os.Exit(0)
		}
	}
}

// monoNow is CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// ---------------------------------------------------------------------------
// The benchmark.

// initSpec is one init under test: argv prefix before the service command.
type initSpec struct {
	name   string
	prefix []string
}

func (s initSpec) argv(cmd ...string) []string {
	return append(slices.Clone(s.prefix), cmd...)
}

type config struct {
	entrypoint string
	initOnly   string
	runs       int
	sigRuns    int
	out        string
	rssWait    time.Duration
	settle     time.Duration
}

func benchMain() int {
	var c config
	flag.StringVar(&c.entrypoint, "entrypoint", "bin/entrypoint", "snapvisor entrypoint binary")
	flag.StringVar(&c.initOnly, "init", "bin/entrypoint-init", "snapvisor's init-only entrypoint binary (make build-init)")
	flag.IntVar(&c.runs, "runs", 300, "start-to-exit runs per init")
	flag.IntVar(&c.sigRuns, "sigruns", 200, "signal-latency samples per init and per kind (TERM, USR1)")
	flag.StringVar(&c.out, "out", "", "also write the markdown report to this file")
	flag.DurationVar(&c.rssWait, "rsswait", time.Second, "how long the service sleeps before RSS is sampled")
	flag.DurationVar(&c.settle, "settle", 3*time.Millisecond, "pause after the service is ready before a signal is sent")
	flag.Parse()
	if c.runs < 1 || c.sigRuns < 1 {
		fmt.Fprintln(os.Stderr, "benchinit: -runs and -sigruns must be positive")
		return 2
	}
	rep, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchinit:", err)
		return 1
	}
	fmt.Print(rep)
	if c.out != "" {
		if err := os.MkdirAll(filepath.Dir(c.out), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "benchinit:", err)
			return 1
		}
		if err := os.WriteFile(c.out, []byte(rep), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "benchinit:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "benchinit: wrote %s\n", c.out)
	}
	return 0
}

// env is the environment every init runs with: SNAPVISOR_LOG_LEVEL=warn for
// fairness (snapvisor would otherwise write two JSON lines per run).
func benchEnv() []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SNAPVISOR_") || strings.HasPrefix(kv, "TINI_") || strings.HasPrefix(kv, "DUMB_INIT_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "SNAPVISOR_LOG_LEVEL=warn")
}

type results struct {
	startup    map[string][]float64 // ms
	rss, hwm   map[string]float64   // KiB, the largest of the samples
	rssDetail  map[string]string
	term, usr1 map[string][]float64 // µs
	floor      map[string][]float64 // ms: diagnostics
}

func run(c config) (string, error) {
	ep, err := filepath.Abs(c.entrypoint)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(ep); err != nil {
		return "", fmt.Errorf("entrypoint: %w (run `make build`)", err)
	}
	epInit, err := filepath.Abs(c.initOnly)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(epInit); err != nil {
		return "", fmt.Errorf("init-only entrypoint: %w (run `make build-init`)", err)
	}
	tini, err := exec.LookPath("tini")
	if err != nil {
		return "", fmt.Errorf("tini not found: run scripts/deps.sh: %w", err)
	}
	dumb, err := exec.LookPath("dumb-init")
	if err != nil {
		return "", fmt.Errorf("dumb-init not found: run scripts/deps.sh: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	inits := []initSpec{
		{sv, []string{ep, "--"}},
		{svInit, []string{epInit, "--"}},
		{"tini", []string{tini, "-s", "--"}},
		{"dumb-init", []string{dumb}},
	}
	env := benchEnv()

	// Sanity: every init runs `true`, exits 0 and prints nothing.
	for _, in := range inits {
		cmd := exec.Command(in.argv("true")[0], in.argv("true")[1:]...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s -- true: %v: %s", in.name, err, out.String())
		}
		if out.Len() > 0 {
			fmt.Fprintf(os.Stderr, "benchinit: warning: %s -- true printed %q\n", in.name, out.String())
		}
	}

	r := results{
		startup: map[string][]float64{}, rss: map[string]float64{}, hwm: map[string]float64{},
		rssDetail: map[string]string{}, term: map[string][]float64{}, usr1: map[string][]float64{},
		floor: map[string][]float64{},
	}
	t0 := time.Now()

	// 1. Start-to-exit wall time, round-robin.
	fmt.Fprintf(os.Stderr, "benchinit: start-to-exit, %d runs per init...\n", c.runs)
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer devnull.Close()
	// Diagnostics for snapvisor's start-up cost, in the same round-robin:
	// the Go runtime alone (this binary exiting at once) and `entrypoint version`
	// (runtime + package init, no supervisor).
	diags := []initSpec{
		{"go-empty", []string{self, exitMode}},
		{"entrypoint-version", []string{ep, "version"}},
		{"entrypoint-init-version", []string{epInit, "version"}},
	}
	startups := append(slices.Clone(inits), diags...)
	for i := 0; i < 10; i++ { // warm the page cache
		for _, in := range startups {
			if _, err := wallTime(startArgv(in, diags), env, devnull); err != nil {
				return "", fmt.Errorf("%s: %w", in.name, err)
			}
		}
	}
	for i := 0; i < c.runs; i++ {
		for j := range startups {
			in := startups[(i+j)%len(startups)] // rotate who goes first
			d, err := wallTime(startArgv(in, diags), env, devnull)
			if err != nil {
				return "", fmt.Errorf("%s: %w", in.name, err)
			}
			ms := float64(d) / 1e6
			if slices.ContainsFunc(diags, func(s initSpec) bool { return s.name == in.name }) {
				r.floor[in.name] = append(r.floor[in.name], ms)
			} else {
				r.startup[in.name] = append(r.startup[in.name], ms)
			}
		}
	}

	// 2. RSS while the service sleeps: all three at once, three rounds.
	fmt.Fprintf(os.Stderr, "benchinit: idle RSS...\n")
	for round := 0; round < 3; round++ {
		if err := measureRSS(inits, env, devnull, c.rssWait, &r); err != nil {
			return "", err
		}
	}

	// 3. Signal latency.
	dir, err := os.MkdirTemp("", "benchinit")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return "", err
	}
	// O_RDWR: opening never blocks, and the read side never sees EOF between services.
	ff, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer ff.Close()
	msgs := readMessages(ff)
	svc := []string{self, serviceMode, fifo}

	direct := initSpec{"direct", nil} // the service alone: its own delivery cost
	withDirect := append(slices.Clone(inits), direct)
	fmt.Fprintf(os.Stderr, "benchinit: SIGTERM latency, %d fresh instances per init...\n", c.sigRuns)
	for i := 0; i < c.sigRuns; i++ {
		for j := range withDirect {
			in := withDirect[(i+j)%len(withDirect)]
			us, err := termOnce(in.argv(svc...), env, devnull, msgs, c.settle)
			if err != nil {
				return "", fmt.Errorf("%s TERM: %w", in.name, err)
			}
			r.term[in.name] = append(r.term[in.name], us)
		}
	}
	fmt.Fprintf(os.Stderr, "benchinit: SIGUSR1 forwarding latency, %d signals to one long-lived instance per init...\n", c.sigRuns)
	for _, in := range withDirect {
		us, err := usr1Series(in.argv(svc...), env, devnull, msgs, c.sigRuns, c.settle)
		if err != nil {
			return "", fmt.Errorf("%s USR1: %w", in.name, err)
		}
		r.usr1[in.name] = us
	}
	elapsed := time.Since(t0)
	return report(c, r, inits, elapsed), nil
}

// startArgv is `INIT -- true` for an init, and the command alone for a diagnostic.
func startArgv(in initSpec, diags []initSpec) []string {
	if slices.ContainsFunc(diags, func(d initSpec) bool { return d.name == in.name }) {
		return in.prefix
	}
	return in.argv("true")
}

// wallTime starts argv and waits for it: the time from just before fork to
// just after wait4 returns. It fails unless the exit status is 0.
func wallTime(argv, env []string, devnull *os.File) (time.Duration, error) {
	attr := &os.ProcAttr{Env: env, Files: []*os.File{devnull, devnull, devnull}}
	start := time.Now()
	p, err := os.StartProcess(argv[0], argv, attr)
	if err != nil {
		return 0, err
	}
	st, err := p.Wait()
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if !st.Success() {
		return 0, fmt.Errorf("%v: %v", argv, st)
	}
	return d, nil
}

func measureRSS(inits []initSpec, env []string, devnull *os.File, wait time.Duration, r *results) error {
	sleepFor := strconv.Itoa(int(math.Ceil((wait + 4*time.Second).Seconds())))
	procs := make([]*os.Process, len(inits))
	for i, in := range inits {
		argv := in.argv("sleep", sleepFor)
		p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: env, Files: []*os.File{devnull, devnull, devnull}})
		if err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
		procs[i] = p
	}
	time.Sleep(wait)
	var firstErr error
	for i, in := range inits {
		st, err := procStatus(procs[i].Pid)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", in.name, err)
		}
		if st["VmRSS"] > r.rss[in.name] {
			r.rss[in.name] = st["VmRSS"]
			r.rssDetail[in.name] = fmt.Sprintf("anon %.0f KiB, file %.0f KiB", st["RssAnon"], st["RssFile"])
		}
		r.hwm[in.name] = max(r.hwm[in.name], st["VmHWM"])
	}
	for i := range inits {
		_ = procs[i].Signal(unix.SIGTERM)
	}
	for i := range inits {
		_, _ = procs[i].Wait()
	}
	return firstErr
}

// procStatus reads the kB fields of /proc/PID/status.
func procStatus(pid int) (map[string]float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseFloat(f[0], 64); err == nil {
				m[k] = n
			}
		}
	}
	if _, ok := m["VmRSS"]; !ok {
		return nil, errors.New("no VmRSS in status")
	}
	return m, nil
}

// message is one line from a service.
type message struct {
	kind byte // 'R' ready, 'S' signal
	pid  int
	sig  int
	ns   int64
}

func readMessages(f *os.File) <-chan message {
	ch := make(chan message, 64)
	go func() {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 2 {
				continue
			}
			var m message
			m.kind = fs[0][0]
			m.pid, _ = strconv.Atoi(fs[1])
			if m.kind == 'S' && len(fs) == 4 {
				m.sig, _ = strconv.Atoi(fs[2])
				m.ns, _ = strconv.ParseInt(fs[3], 10, 64)
			}
			ch <- m
		}
	}()
	return ch
}

// expect waits for the next message of kind (from pid, unless pid is 0),
// dropping stale ones from earlier services.
func expect(msgs <-chan message, kind byte, pid int) (message, error) {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m.kind == kind && (pid == 0 || m.pid == pid) {
				return m, nil
			}
		case <-timeout:
			return message{}, fmt.Errorf("no %q message from the service within 5s", kind)
		}
	}
}

// startService starts argv (an init around the service, or the service alone)
// and waits until the service has installed its handlers. It returns the
// process to signal (the init) and the service's pid.
func startService(argv, env []string, devnull *os.File, msgs <-chan message) (*os.Process, int, error) {
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Env: env, Files: []*os.File{devnull, devnull, os.Stderr}})
	if err != nil {
		return nil, 0, err
	}
	m, err := expect(msgs, 'R', 0)
	if err != nil {
		_ = p.Kill()
		_, _ = p.Wait()
		return nil, 0, err
	}
	return p, m.pid, nil
}

// termOnce starts a fresh init+service, sends SIGTERM to the init and returns
// the microseconds until the service received it.
func termOnce(argv, env []string, devnull *os.File, msgs <-chan message, settle time.Duration) (float64, error) {
	p, svcPid, err := startService(argv, env, devnull, msgs)
	if err != nil {
		return 0, err
	}
	time.Sleep(settle) // let the init reach its idle wait
	sent := monoNow()
	if err := unix.Kill(p.Pid, unix.SIGTERM); err != nil {
		return 0, err
	}
	m, err := expect(msgs, 'S', svcPid)
	st, werr := p.Wait()
	if err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, werr
	}
	// The service exits 0 on TERM; dumb-init and tini pass that through.
	if !st.Success() {
		return 0, fmt.Errorf("init exited with %v", st)
	}
	return float64(m.ns-sent) / 1e3, nil
}

// usr1Series starts one init+service and sends SIGUSR1 n times to the init,
// one at a time, returning each latency in microseconds.
func usr1Series(argv, env []string, devnull *os.File, msgs <-chan message, n int, settle time.Duration) ([]float64, error) {
	p, svcPid, err := startService(argv, env, devnull, msgs)
	if err != nil {
		return nil, err
	}
	defer func() {
		_ = unix.Kill(p.Pid, unix.SIGTERM)
		_, _ = p.Wait()
	}()
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		time.Sleep(settle)
		sent := monoNow()
		if err := unix.Kill(p.Pid, unix.SIGUSR1); err != nil {
			return nil, err
		}
		m, err := expect(msgs, 'S', svcPid)
		if err != nil {
			return nil, err
		}
		if m.sig != int(unix.SIGUSR1) {
			return nil, fmt.Errorf("service got signal %d, want USR1", m.sig)
		}
		out = append(out, float64(m.ns-sent)/1e3)
	}
	return out, nil
}

// ---------------------------------------------------------------------------
// Statistics and the report.

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// pct is the nearest-rank percentile p (0-100).
func pct(xs []float64, p float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

// The inits under test, by the names the report gives them.
const (
	sv     = "entrypoint"      // snapvisor, the full build
	svInit = "entrypoint-init" // snapvisor's init-only build (make build-init)
	ti     = "tini"
	di     = "dumb-init"
)

// Targets of the init-only build (issue 18) against tini, in the same run.
const (
	initStartTarget = 1.3  // start-to-exit median, × tini's
	initRSSTarget   = 2048 // idle VmRSS, KiB
)

func report(c config, r results, inits []initSpec, elapsed time.Duration) string {
	var b strings.Builder
	row := func(figure string, f func(string) float64, format, target, verdict string) {
		fmt.Fprintf(&b, "| %s |", figure)
		for _, in := range inits {
			fmt.Fprintf(&b, " "+format+" |", f(in.name))
		}
		for _, n := range []string{sv, svInit} {
			ratio := "—"
			if t := f(ti); t > 0 {
				ratio = fmt.Sprintf("%.2f×", f(n)/t)
			}
			fmt.Fprintf(&b, " %s |", ratio)
		}
		fmt.Fprintf(&b, " %s | %s |\n", target, verdict)
	}
	fmt.Fprintf(&b, "## Init benchmark: snapvisor (entrypoint, entrypoint-init) vs tini vs dumb-init\n\n")
	st := r.startup
	med := func(n string) float64 { return pct(st[n], 50) }
	fmt.Fprintf(&b, "| init | start-to-exit `-- true`, median (ms) | × tini | idle VmRSS (MiB) | SIGTERM→service p50 (µs) | target | met |\n")
	fmt.Fprintf(&b, "|---|---:|---:|---:|---:|---|---|\n")
	for _, in := range inits {
		target, met := "", ""
		switch in.name {
		case sv:
			target, met = "≤ tini + 3 ms, ≤ 8 MiB", passFail(med(sv) <= med(ti)+3 && r.rss[sv] <= 8*1024)
		case svInit:
			target = fmt.Sprintf("≤ %.1f× tini, ≤ %d MiB", initStartTarget, initRSSTarget/1024)
			met = passFail(med(svInit) <= initStartTarget*med(ti) && r.rss[svInit] <= initRSSTarget)
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f× | %.2f | %.0f | %s | %s |\n", in.name, med(in.name), med(in.name)/med(ti),
			r.rss[in.name]/1024, pct(r.term[in.name], 50), target, met)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "| figure |")
	for _, in := range inits {
		fmt.Fprintf(&b, " %s |", in.name)
	}
	fmt.Fprintf(&b, " ratio %s/tini | ratio %s/tini | target | pass/fail |\n", sv, svInit)
	fmt.Fprintf(&b, "|---|%s---:|---:|---|---|\n", strings.Repeat("---:|", len(inits)))

	row(fmt.Sprintf("start-to-exit `-- true`, mean (ms, %d runs)", c.runs), func(n string) float64 { return mean(st[n]) }, "%.2f", "", "")
	row("start-to-exit `-- true`, median (ms)", med, "%.2f", fmt.Sprintf("%s ≤ tini + 3 ms; %s ≤ %.1f× tini", sv, svInit, initStartTarget),
		passFail(med(sv) <= med(ti)+3)+" / "+passFail(med(svInit) <= initStartTarget*med(ti)))
	row("start-to-exit `-- true`, p99 (ms)", func(n string) float64 { return pct(st[n], 99) }, "%.2f", "", "")
	row("idle VmRSS (MiB)", func(n string) float64 { return r.rss[n] / 1024 }, "%.2f", fmt.Sprintf("%s ≤ 8 MiB; %s ≤ %d MiB", sv, svInit, initRSSTarget/1024),
		passFail(r.rss[sv] <= 8*1024)+" / "+passFail(r.rss[svInit] <= initRSSTarget))
	row("idle VmHWM (MiB)", func(n string) float64 { return r.hwm[n] / 1024 }, "%.2f", "(info)", "")
	term, usr1 := r.term, r.usr1
	sigVerdict := func(xs map[string][]float64) string {
		return passFail(pct(xs[sv], 99) <= 1000) + " / " + passFail(pct(xs[svInit], 99) <= 1000)
	}
	row(fmt.Sprintf("SIGTERM→service, fresh instance, p50 (µs, %d samples)", c.sigRuns), func(n string) float64 { return pct(term[n], 50) }, "%.0f", "", "")
	row("SIGTERM→service, fresh instance, p99 (µs)", func(n string) float64 { return pct(term[n], 99) }, "%.0f", "≤ 1000 µs", sigVerdict(term))
	row(fmt.Sprintf("SIGUSR1→service, long-lived, p50 (µs, %d samples)", c.sigRuns), func(n string) float64 { return pct(usr1[n], 50) }, "%.0f", "", "")
	row("SIGUSR1→service, long-lived, p99 (µs)", func(n string) float64 { return pct(usr1[n], 99) }, "%.0f", "≤ 1000 µs", sigVerdict(usr1))

	fmt.Fprintf(&b, "\nReference points, measured in the same run:\n\n")
	fmt.Fprintf(&b, "- service signalled directly, no init (its own Go signal-delivery cost, included in every figure above): SIGTERM p50 %.0f µs / p99 %.0f µs; SIGUSR1 p50 %.0f µs / p99 %.0f µs.\n",
		pct(term["direct"], 50), pct(term["direct"], 99), pct(usr1["direct"], 50), pct(usr1["direct"], 99))
	fmt.Fprintf(&b, "- start-to-exit of an empty static Go program (Go runtime floor): median %.2f ms, mean %.2f ms; `version` (runtime + package init, no supervisor): entrypoint median %.2f ms, mean %.2f ms; entrypoint-init median %.2f ms, mean %.2f ms.\n",
		pct(r.floor["go-empty"], 50), mean(r.floor["go-empty"]), pct(r.floor["entrypoint-version"], 50), mean(r.floor["entrypoint-version"]),
		pct(r.floor["entrypoint-init-version"], 50), mean(r.floor["entrypoint-init-version"]))
	fmt.Fprintf(&b, "- RSS breakdown (largest of 3 samples): ")
	for i, in := range inits {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s", in.name, r.rssDetail[in.name])
	}
	b.WriteString(".\n")

	fmt.Fprintf(&b, "\nHow: `%s -- true` and `%s -- true` vs `tini -s -- true` vs `dumb-init true`, %d runs each interleaved round-robin (after 10 warm-up rounds), wall time from fork to wait4 in the benchmark. ", filepath.Base(c.entrypoint), filepath.Base(c.initOnly), c.runs)
	fmt.Fprintf(&b, "RSS: VmRSS/VmHWM from /proc/PID/status of the init %s after it started `sleep`, largest of 3 rounds. ", c.rssWait)
	fmt.Fprintf(&b, "Signals: the service is the benchmark binary re-executed in a service mode (the same program under every init); it writes the CLOCK_MONOTONIC time at which the signal reached it to a FIFO, compared with the time taken just before kill(2) to the init; the signal is sent %s after the service reported ready. ", c.settle)
	fmt.Fprintf(&b, "The inits run as plain children of the benchmark, not as PID 1 (tini with -s to be a subreaper, as snapvisor is); snapvisor runs with SNAPVISOR_LOG_LEVEL=warn so it logs nothing per run. ")
	fmt.Fprintf(&b, "Machine: %d CPUs, Linux %s, benchmark built with %s; whole run %.0f s.\n", runtime.NumCPU(), kernel(), runtime.Version(), elapsed.Seconds())
	return b.String()
}

func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}
