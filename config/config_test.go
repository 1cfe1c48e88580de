package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

type spec struct {
	Timeout time.Duration `envconfig:"SNAPVISOR_T_TIMEOUT" default:"10s" desc:"a timeout"`
	Name    string        `envconfig:"SNAPVISOR_T_NAME" default:"x" desc:"a name"`
	Key     Secret        `envconfig:"SNAPVISOR_T_KEY" desc:"a key"`
}

func TestLoad(t *testing.T) {
	t.Run("defaults, and unprefixed names are ignored", func(t *testing.T) {
		t.Setenv("T_NAME", "service-owned")
		var s spec
		if err := Load(&s); err != nil {
			t.Fatal(err)
		}
		if s.Timeout != 10*time.Second || s.Name != "x" || s.Key != "" {
			t.Fatalf("got %+v", s)
		}
	})
	t.Run("bad value names variable and value", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_TIMEOUT", "soon")
		var s spec
		err := Load(&s)
		var ce *Error
		if !errors.As(err, &ce) || ce.Var != "SNAPVISOR_T_TIMEOUT" {
			t.Fatalf("got %v", err)
		}
		for _, want := range []string{"SNAPVISOR_T_TIMEOUT", `"soon"`, "accepted: a duration"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%q does not mention %q", err, want)
			}
		}
	})
	t.Run("secret from _FILE, trailing newline trimmed", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SNAPVISOR_T_KEY_FILE", f)
		var s spec
		if err := Load(&s); err != nil {
			t.Fatal(err)
		}
		if s.Key.Reveal() != "s3cret" {
			t.Fatalf("key %q", s.Key.Reveal())
		}
	})
	t.Run("both NAME and NAME_FILE is an error", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_KEY", "a")
		t.Setenv("SNAPVISOR_T_KEY_FILE", "/dev/null")
		var s spec
		var ce *Error
		if err := Load(&s); !errors.As(err, &ce) || ce.Var != "SNAPVISOR_T_KEY_FILE" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unreadable _FILE is an error", func(t *testing.T) {
		t.Setenv("SNAPVISOR_T_KEY_FILE", "/nonexistent/key")
		var s spec
		var ce *Error
		if err := Load(&s); !errors.As(err, &ce) || !strings.Contains(err.Error(), "/nonexistent/key") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSecret_String(t *testing.T) {
	s := Secret("hunter2")
	j, _ := json.Marshal(struct{ K Secret }{s})
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v %+v", s, s, s, struct{ K Secret }{s}), string(j)} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret printed: %s", out)
		}
	}
}

func TestSecretVars(t *testing.T) {
	got := SecretVars(&spec{})
	if strings.Join(got, ",") != "SNAPVISOR_T_KEY,SNAPVISOR_T_KEY_FILE" {
		t.Fatalf("got %v", got)
	}
}

func TestNames(t *testing.T) {
	got := strings.Join(Names(&spec{}), ",")
	for _, want := range []string{"SNAPVISOR_T_TIMEOUT", "SNAPVISOR_T_KEY"} {
		if !strings.Contains(got, want) {
			t.Errorf("Names = %s, lacks %s", got, want)
		}
	}
	if strings.Contains(got, "_FILE") {
		t.Errorf("Names = %s: NAME_FILE variants are not names of their own", got)
	}
}

func TestUsage(t *testing.T) {
	var b bytes.Buffer
	Usage(tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0), &spec{})
	for _, want := range []string{"SNAPVISOR_T_TIMEOUT", "10s", "a timeout", "SNAPVISOR_T_KEY_FILE"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}
