//go:build !initonly

package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEntrypoint_NotifyConfigErrors: a bad level, template, notification URL
// or heartbeat URL exits 78 before the service starts, naming the variable
// and never showing a URL's token; `entrypoint env` lists the variables and
// never their values.
func TestEntrypoint_NotifyConfigErrors(t *testing.T) {
	const token = "n0tifyT0kenQ7"
	for _, tc := range []struct {
		name, mention string
		env           []string
	}{
		{"Level", "SNAPVISOR_NOTIFY_LEVEL", []string{"SNAPVISOR_NOTIFY_LEVEL=loud"}},
		{"TemplateSyntax", "SNAPVISOR_NOTIFY_TEMPLATE", []string{"SNAPVISOR_NOTIFY_TEMPLATE={{.Event"}},
		{"TemplateField", "SNAPVISOR_NOTIFY_TEMPLATE", []string{"SNAPVISOR_NOTIFY_TEMPLATE={{.Snapshots}}"}},
		{"URLScheme", "SNAPVISOR_NOTIFY_URLS", []string{"SNAPVISOR_NOTIFY_URLS=generic://127.0.0.1/ok,nosuch://" + token + "@host/" + token}},
		{"URLOption", "SNAPVISOR_NOTIFY_URLS", []string{"SNAPVISOR_NOTIFY_URLS=smtp://u:" + token + "@127.0.0.1/?encryption=sometimes&to=a@b.test"}},
		{"Heartbeat", "SNAPVISOR_HEARTBEAT_URL", []string{"SNAPVISOR_HEARTBEAT_URL=ftp://host/" + token}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			marker := filepath.Join(root, "started")
			env := append([]string{"SNAPVISOR_BACKUP=true", "SNAPVISOR_SOURCE=" + filepath.Join(root, "data"), "SNAPVISOR_DIR=" + filepath.Join(root, "backups"),
				"SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "ctl.sock")}, tc.env...)
			code, _, errOut := entrypointWithin(t, 30*time.Second, env, "--", "touch", marker)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitConfig, errOut)
			}
			if !strings.Contains(errOut, tc.mention) {
				t.Errorf("the error does not name %s:\n%s", tc.mention, errOut)
			}
			if strings.Contains(errOut, token) {
				t.Errorf("the error shows the URL's token:\n%s", errOut)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the service was started despite the configuration error")
			}
		})
	}

	t.Run("Env", func(t *testing.T) {
		code, out, errOut := entrypointWithin(t, 30*time.Second, []string{"SNAPVISOR_NOTIFY_URLS=slack://" + token + "@C1", "SNAPVISOR_HEARTBEAT_URL=https://127.0.0.1/" + token}, "env")
		if code != 0 {
			t.Fatalf("env: exit %d: %s", code, errOut)
		}
		for _, v := range []string{"SNAPVISOR_NOTIFY_URLS", "SNAPVISOR_NOTIFY_LEVEL", "SNAPVISOR_NOTIFY_TEMPLATE", "SNAPVISOR_HEARTBEAT_URL", "SNAPVISOR_NOTIFY_URLS_FILE"} {
			if !strings.Contains(out, v) {
				t.Errorf("entrypoint env does not list %s", v)
			}
		}
		if strings.Contains(out+errOut, token) {
			t.Errorf("entrypoint env shows the token:\n%s", out)
		}
	})
}

// TestCmdSnapshot_Notify: a standalone `entrypoint snapshot` (a CronJob)
// delivers its notification and heartbeat before it exits; the URLs may come
// from _FILE secrets.
func TestCmdSnapshot_Notify(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		hits = append(hits, req.Method+" "+req.URL.Path+" "+string(body))
		mu.Unlock()
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	host := ln.Addr().String()

	root := t.TempDir()
	data := filepath.Join(root, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	urls := filepath.Join(root, "urls")
	if err := os.WriteFile(urls, []byte("generic://"+host+"/hook?disabletls=yes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gate := filepath.Join(root, "fail")
	env := []string{"SNAPVISOR_SOURCE=" + data, "SNAPVISOR_DIR=" + filepath.Join(root, "backups"), "SNAPVISOR_CONTROL_SOCKET=" + filepath.Join(root, "none.sock"),
		"SNAPVISOR_NOTIFY_URLS_FILE=" + urls, "SNAPVISOR_NOTIFY_LEVEL=info", "SNAPVISOR_NOTIFY_TEMPLATE={{.Event}} {{.Reason}}",
		"SNAPVISOR_HEARTBEAT_URL=http://" + host + "/ping", "SNAPVISOR_PRE_COMMAND=! [ -e '" + gate + "' ]"}

	if code, _, errOut := entrypointWithin(t, 60*time.Second, env, "snapshot"); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errOut)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := entrypointWithin(t, 60*time.Second, env, "snapshot"); code == 0 {
		t.Fatalf("snapshot with a failing pre-hook: exit 0: %s", errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"GET /ping ", "POST /hook snapshot done standalone", "GET /ping/fail ", "POST /hook snapshot failed standalone"}
	if strings.Join(hits, "|") != strings.Join(want, "|") {
		t.Errorf("the receiver got %q before the commands exited, want %q", hits, want)
	}
}
