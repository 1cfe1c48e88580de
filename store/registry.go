package store

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// backend is one kind of store, registered by its own file (file.go, s3.go,
// sftp.go, azure.go, gcs.go) from an init function, so that the generic code
// (Open, parseRemote, Config.Validate, the accepted-URL list, StreamBuffer)
// names no backend, and a build tag on a backend's file leaves it out of the
// binary: its scheme is then refused as a configuration error.
type backend struct {
	scheme      string // URL scheme, lower case
	order       int    // place in lists shown to users (acceptedURLs)
	example     string // the URL form shown in configuration errors; "" for an alias (not listed)
	credentials string // the variables carrying its credentials; "" for none

	// check checks a URL of the scheme beyond the generic checks of
	// parseRemote (which add the URL and SNAPVISOR_REMOTES to its error).
	check func(u *url.URL) error
	// validate checks the backend's settings in Config; used tells whether a
	// remote of the scheme is configured. Errors are *config.Error. Optional.
	validate func(c Config, used bool) []error
	// open opens a URL that check accepted; it connects lazily or fails with an *Error.
	open func(ctx context.Context, u *url.URL, cfg Config, log *zap.Logger) (Store, error)
	// streamBuffer is the most memory a streaming upload (Put with unknown
	// size) buffers; the store's own streamBuffer method answers the same.
	streamBuffer int64
}

// backends holds the registered backends by scheme. It is the package's one
// global, in the idiom of database/sql drivers and image formats: filled by
// the backends' init functions (register) and only read afterwards, so it
// needs no lock.
var backends = map[string]backend{}

// register adds b to backends; it is called only from init functions.
func register(b backend) {
	if _, dup := backends[b.scheme]; dup || b.scheme == "" || b.scheme != strings.ToLower(b.scheme) || b.open == nil || b.check == nil {
		panic(fmt.Sprintf("store: bad or duplicate backend registration %q", b.scheme)) // a programming error, at start-up
	}
	backends[b.scheme] = b
}

// registered returns the backends in their order.
func registered() []backend {
	out := make([]backend, 0, len(backends))
	for _, b := range backends {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b backend) int {
		return cmp.Or(cmp.Compare(a.order, b.order), strings.Compare(a.scheme, b.scheme))
	})
	return out
}

// acceptedURLs describes the accepted remote URLs, for configuration errors:
// the example of every backend built into the binary, in order.
func acceptedURLs() string {
	var ex []string
	for _, b := range registered() {
		if b.example != "" {
			ex = append(ex, b.example)
		}
	}
	return "comma-separated URLs: " + strings.Join(ex, ", ")
}

// credentialVars names the variables that carry a scheme's credentials.
func credentialVars(scheme string) string {
	if c := backends[scheme].credentials; c != "" {
		return c
	}
	return "see entrypoint env"
}

// maxStreamBuffer is the largest streaming buffer of any backend, assumed
// for a store not open yet.
func maxStreamBuffer() int64 {
	var m int64
	for _, b := range backends {
		m = max(m, b.streamBuffer)
	}
	return m
}
