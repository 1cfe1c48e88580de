// Package config loads each component's configuration from the environment
// (envconfig, prefix SNAPVISOR_), resolves NAME_FILE secrets, and reports bad
// input as errors that name the variable, the value and what is accepted.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// prefix is the prefix of every snapvisor environment variable.
const prefix = "SNAPVISOR"

// Secret is a string that never prints its value: fmt, zap and JSON see "[redacted]".
type Secret string

// Reveal returns the secret value; call it only where the value is used.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString implements fmt.GoStringer without revealing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps the value out of JSON and text encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Error is a configuration error: one variable, its value (unless secret) and what is accepted.
type Error struct {
	Var      string // full environment variable name, e.g. SNAPVISOR_STOP_TIMEOUT
	Value    string // the bad value; empty when Secret
	Secret   bool   // the value must not be shown
	Accepted string // what is accepted, e.g. "a duration such as 10s or 1m30s"
	Err      error  // underlying cause, optional
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Var)
	switch {
	case e.Secret:
		b.WriteString(" (value hidden)")
	default:
		fmt.Fprintf(&b, "=%q", e.Value)
	}
	b.WriteString(" is invalid")
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Accepted != "" {
		fmt.Fprintf(&b, "; accepted: %s", e.Accepted)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Invalid builds an *Error for variable name (without prefix, e.g. "STOP_TIMEOUT").
func Invalid(name, value, accepted string) *Error {
	return &Error{Var: Var(name), Value: value, Accepted: accepted}
}

// Var returns the full environment variable name for a key without prefix.
func Var(name string) string { return prefix + "_" + name }

// Lookup reads environment variables; os.LookupEnv in production, a map in tests.
type Lookup func(key string) (string, bool)

// Load fills spec (a pointer to a struct with envconfig tags) from the environment
// and resolves every Secret field's NAME_FILE variant. Every field carries its
// full variable name as its envconfig tag (SNAPVISOR_KEEP, not KEEP: with a short
// tag envconfig would also read an unprefixed KEEP meant for the service);
// secret fields are of type Secret.
func Load(spec any) error {
	if err := envconfig.Process("", spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return &Error{Var: pe.KeyName, Value: pe.Value, Accepted: accepted(pe.TypeName), Err: pe.Err}
		}
		return fmt.Errorf("configuration: %w", err)
	}
	return resolveFiles(spec, os.LookupEnv)
}

func accepted(typ string) string {
	switch typ {
	case "Duration", "time.Duration":
		return "a duration such as 500ms, 10s or 1m30s"
	case "bool":
		return "true or false"
	case "int", "int64", "uint", "uint64":
		return "a whole number"
	}
	return "a value of type " + typ
}

// SecretVars lists the environment variables holding secret values for the given specs
// (NAME and NAME_FILE), so that they can be kept out of the service's environment.
func SecretVars(specs ...any) []string {
	var out []string
	for _, spec := range specs {
		for _, f := range fields(spec) {
			if f.secret {
				out = append(out, f.key, f.key+"_FILE")
			}
		}
	}
	return out
}

// Names lists the environment variables the given specs read, in field
// order (a secret's NAME_FILE variant not included).
func Names(specs ...any) []string {
	var out []string
	for _, spec := range specs {
		for _, f := range fields(spec) {
			out = append(out, f.key)
		}
	}
	return out
}

type field struct {
	key, def, desc, typ string
	secret              bool
	trimSpace           bool // tag file:"trimspace": NAME_FILE's content loses the white space around it, not only the line end
	value               reflect.Value
}

func fields(spec any) []field {
	v := reflect.ValueOf(spec)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	t := v.Type()
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("envconfig")
		if tag == "" || tag == "-" || !sf.IsExported() {
			continue
		}
		f := field{
			key:    tag,
			def:    sf.Tag.Get("default"),
			desc:   sf.Tag.Get("desc"),
			typ:    typeName(sf.Type),
			secret: sf.Type == reflect.TypeOf(Secret("")),
			value:  v.Field(i),
		}
		f.trimSpace = sf.Tag.Get("file") == "trimspace"
		out = append(out, f)
	}
	return out
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(Secret("")):
		return "secret"
	case t.String() == "time.Duration", t == reflect.TypeOf(Age{}):
		return "duration"
	case t == reflect.TypeOf(Size{}):
		return "size"
	case t.Kind() == reflect.Slice:
		return "list"
	}
	return t.Kind().String()
}

func resolveFiles(spec any, lookup Lookup) error {
	for _, f := range fields(spec) {
		if !f.secret {
			continue
		}
		path, ok := lookup(f.key + "_FILE")
		if !ok || path == "" {
			continue
		}
		if v, set := lookup(f.key); set && v != "" {
			return &Error{Var: f.key + "_FILE", Value: path,
				Accepted: "either " + f.key + " or " + f.key + "_FILE, not both"}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return &Error{Var: f.key + "_FILE", Value: path, Err: err,
				Accepted: "the path of a readable file holding the secret"}
		}
		v := strings.TrimRight(string(b), "\r\n")
		if f.trimSpace {
			v = strings.TrimSpace(v)
		}
		f.value.SetString(v)
	}
	return nil
}

// Usage writes every variable of the specs with its type, default and meaning.
func Usage(w *tabwriter.Writer, specs ...any) {
	fmt.Fprintln(w, "VARIABLE\tTYPE\tDEFAULT\tMEANING")
	for _, spec := range specs {
		for _, f := range fields(spec) {
			def := f.def
			if def == "" {
				def = "-"
			}
			desc := f.desc
			if f.secret {
				desc += " (also " + f.key + "_FILE; never logged or passed to the service)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.key, f.typ, def, desc)
		}
	}
	w.Flush()
}
