package store

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"snapvisor/internal/fuzzseed"
)

// remoteSeeds are URLs of every scheme, with and without credentials, the
// bad values of the hostile test, and inputs that url.Parse rejects.
var remoteSeeds = []string{
	"file:///mnt/nfs/backups", "file://localhost/srv/b", "file://host/x", "file:///", "file://u:pw-Xy7Qz@localhost/srv",
	"s3://bucket/prefix?endpoint=127.0.0.1:9000&tls=false&region=us-east-1", "s3://b/p?tls=maybe",
	"s3://b/p?endpoint=h&secret_key=abc123&x-amz-signature=q9q9q9", "s3://AKIA:secret-Xy7Qz@bucket/p",
	"s3://b/p?endpoint=http://user:pw-Xy7Qz@h:9000", "s3://b/p?%73ig=sig-Xy7Qz;x", "s3://b/p?Sig=a&SIG=b",
	"sftp://u@h:2222/srv/backups", "sftp://backup:hunter22@host:22/path", "sftp://h", "sftp://u@h:0/p", "sftp://u@h:99999/p",
	"sftp:user:pw-Xy7Qz@host/path", "sftp:/path", "sftp://[::1]:22/p", "sftp://u@[fe80::1%25eth0]/p",
	"azure://container/prefix", "azure://c/p?sig=abcdef",
	"azure://c/p?endpoint=https://acct.blob.core.windows.net/?sv=2022&sig=SAS-Xy7Qz%3D",
	"azure://c/p?endpoint=https%3A%2F%2Facct.blob.core.windows.net%2F%3Fsv%3D2022%26sig%3DSAS-Xy7Qz",
	"azure://c/p?endpoint=" + url.QueryEscape("https://a/?x="+url.QueryEscape("https://b/?y="+url.QueryEscape("https://c/?sig=deep-Xy7Qz"))),
	"gs://bucket/prefix", "gs://bucket", "gs://", "gs:///p", "GS://bucket/p",
	"redis://snap@127.0.0.1:6379/0?prefix=p", "redis://snap:pw-Xy7Qz@h:6379/1", "rediss://:pw-Xy7Qz@h/0?prefix=a*[b]",
	"redis://h/0?password=pw-Xy7Qz", "redis://h/x",
	"::not a url//user:pw-Xy7Qz@host", "%zz://u:pw-Xy7Qz@h/p?token=tok-Xy7Qz", "http://h/p", "/just/a/path", "",
	" s3://b/p ", "s3://b/p#token=frag", "s3://b/p?x=1&&y", "s3://b/p?x=%zz&key=k-Xy7Qz",
}

func TestFuzzSeeds(t *testing.T) {
	var remotes []fuzzseed.Seed
	for _, s := range remoteSeeds {
		remotes = append(remotes, fuzzseed.Seed{Name: fuzzseed.Name(s), Args: []any{s}})
	}
	fuzzseed.Sync(t, "FuzzRedact", remotes)
}

// secret is a credential in a URL: as written (raw) and as meant (decoded).
type secret struct{ raw, decoded string }

// secretsOf finds the credentials in a remote URL as a reader would, without
// Redact's code: the password of the user info (also in an opaque
// "scheme:user:pw@host" and in input url.Parse rejects), and the values of
// query parameters whose name looks like a credential (secretParam, the
// package's one definition of that), in nested URLs too (three levels).
func secretsOf(s string, depth int) []secret {
	var out []secret
	s = strings.TrimSpace(s)
	rest := s
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	} else if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[i+1:] // opaque: scheme:user:pw@host
	}
	auth := rest
	if i := strings.IndexAny(auth, "/?#"); i >= 0 {
		auth = auth[:i]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		if _, pw, ok := strings.Cut(auth[:i], ":"); ok {
			out = append(out, secret{pw, unescape(pw)})
		}
	}
	if _, query, ok := strings.Cut(s, "?"); ok {
		query, _, _ = strings.Cut(query, "#")
		for _, kv := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
			k, v, _ := strings.Cut(kv, "=")
			if secretParam().MatchString(k) || secretParam().MatchString(unescape(k)) {
				out = append(out, secret{v, unescape(v)})
			} else if depth < 3 && strings.Contains(unescape(v), "://") {
				out = append(out, secretsOf(unescape(v), depth+1)...)
			}
		}
	}
	return out
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}

// leaked reports whether out shows sec although in shows it only where it is a secret.
func leaked(out, in string, sec secret) (string, bool) {
	for _, form := range []string{sec.raw, sec.decoded, url.QueryEscape(sec.decoded), url.PathEscape(sec.decoded)} {
		// Short values and values that appear elsewhere in the input (the
		// password "b" of "s3://b:b@b") cannot be told apart from the rest.
		if len(form) < 4 || strings.Count(in, form) > 1 || strings.Count(strings.Replace(in, sec.raw, "", 1), form) > 0 {
			continue
		}
		if strings.Contains(out, form) {
			return form, true
		}
	}
	return "", false
}

// FuzzRedact: Redact never panics and never shows the password or a secret
// parameter of its input; parseRemote never accepts a URL holding one, and
// its error (which quotes the URL) never shows one either.
func FuzzRedact(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > 1024 {
			return
		}
		out := Redact(in)
		secrets := secretsOf(in, 0)
		for _, sec := range secrets {
			if form, bad := leaked(out, in, sec); bad {
				t.Fatalf("Redact(%q) = %q shows the secret %q", in, out, form)
			}
		}
		u, err := parseRemote(in)
		if err != nil {
			for _, sec := range secrets {
				if form, bad := leaked(err.Error(), in, sec); bad {
					// The error's own words ("not a URL") are not the secret:
					// it is shown only if the error without it lacks it.
					if _, alt := parseRemote(strings.Replace(in, sec.raw, "\x01", 1)); alt != nil && strings.Contains(alt.Error(), form) {
						continue
					}
					t.Fatalf("parseRemote(%q) error %q shows the secret %q", in, err, form)
				}
			}
			return
		}
		if !slices.Contains([]string{"file", "s3", "sftp", "azure", "gs", "redis", "rediss", "postgres", "postgresql", "sqlite"}, u.Scheme) {
			t.Fatalf("parseRemote(%q) accepted scheme %q", in, u.Scheme)
		}
		for _, sec := range secrets {
			if sec.decoded != "" {
				t.Fatalf("parseRemote(%q) accepted a URL holding the credential %q", in, sec.decoded)
			}
		}
	})
}
