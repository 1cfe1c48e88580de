package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"time"
)

// controlHandler serves POST /snapshot (take one now, or join the run in
// progress), GET /status and POST /takeover (take every remote's lease now)
// on the control socket, and POST /drill?from=URL (run a restore drill now
// and wait for its result).
func (r *Runner) controlHandler(ctx context.Context, next func() time.Time, maxAge time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /snapshot", func(w http.ResponseWriter, req *http.Request) {
		res, err := r.Trigger(req.Context(), ReasonRequest)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, r.status(next(), maxAge))
	})
	mux.HandleFunc("POST /replicate", func(w http.ResponseWriter, req *http.Request) {
		res, err := r.Replicate(req.Context())
		if res.Started.IsZero() && err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("POST /drill", func(w http.ResponseWriter, req *http.Request) {
		res, err := r.Drill(req.Context(), req.URL.Query().Get("from"))
		if err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, ErrDrillRemote) {
				code = http.StatusBadRequest
			}
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, res)
	})
	mux.HandleFunc("POST /takeover", func(w http.ResponseWriter, req *http.Request) {
		writeJSON(w, r.TakeLeases(req.Context()))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ErrNoSupervisor means no running snapvisor answers on the control socket.
var ErrNoSupervisor = errors.New("no running snapvisor on the control socket")

// Client talks to a running snapvisor over its control socket. It talks only
// to a server running as root or as its own uid (SO_PEERCRED): another uid's
// is an *ImpostorError; a socket it may not use is a *NoAccessError.
type Client struct {
	Socket string // the socket's path
	err    error  // from finding the default socket
	http   *http.Client
}

// NewClient returns a client for the socket at path; empty means the default
// (see Config.SocketPath), found as the server of this uid made it.
func NewClient(path string) *Client {
	c := &Client{Socket: path}
	if path == "" {
		c.Socket, c.err = Config{}.SocketPath(false)
	}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", c.Socket)
			if err != nil {
				return nil, err
			}
			if err := checkPeer(conn, c.Socket); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		},
	}}
	return c
}

// Snapshot asks the running supervisor for a snapshot and waits for its result.
func (c *Client) Snapshot(ctx context.Context) (Result, error) {
	var res Result
	return res, c.do(ctx, http.MethodPost, "/snapshot", &res)
}

// Replicate asks the running supervisor for a replication now (it waits
// for a snapshot in progress) and returns its result.
func (c *Client) Replicate(ctx context.Context) (ReplicateResult, error) {
	var res ReplicateResult
	return res, c.do(ctx, http.MethodPost, "/replicate", &res)
}

// Status fetches the running supervisor's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodGet, "/status", &st)
}

// Drill asks the running supervisor for a restore drill now (Runner.Drill:
// of the remote from, "" for the next in turn) and waits for its result.
func (c *Client) Drill(ctx context.Context, from string) (DrillResult, error) {
	var res DrillResult
	return res, c.do(ctx, http.MethodPost, "/drill?from="+url.QueryEscape(from), &res)
}

// Takeover asks the running supervisor to take every remote's lease now
// (Runner.TakeLeases) and returns what it did per remote.
func (c *Client) Takeover(ctx context.Context) ([]LeaseResult, error) {
	var res []LeaseResult
	return res, c.do(ctx, http.MethodPost, "/takeover", &res)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	if c.err != nil {
		return c.err
	}
	exists, err := checkSocketPath(c.Socket, c.Socket)
	switch {
	case errors.Is(err, fs.ErrPermission):
		return noAccess(c.Socket, fs.ErrPermission)
	case err != nil:
		return err
	case !exists:
		return fmt.Errorf("%w (%s): no such socket", ErrNoSupervisor, c.Socket)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://snapvisor"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		var imp *ImpostorError
		switch {
		case errors.As(err, &imp):
			return imp
		case errors.Is(err, fs.ErrPermission):
			return noAccess(c.Socket, fs.ErrPermission)
		case errors.As(err, &op) && op.Op == "dial":
			return fmt.Errorf("%w (%s): %v", ErrNoSupervisor, c.Socket, err)
		}
		return fmt.Errorf("control socket %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("control socket %s: %s: %s", c.Socket, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
