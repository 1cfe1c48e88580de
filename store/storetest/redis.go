package storetest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"snapvisor/store"
)

// Redis test credentials: the password (requirepass) of the protected
// instance, and its ACL user, allowed only the keys under RedisACLPrefix and
// only the commands of RedisACLCommands.
const (
	RedisPassword    = "snapvisor-redis-secret"
	RedisACLUser     = "snap"
	RedisACLPassword = "snap-acl-secret"
	RedisACLPrefix   = "acl"
)

// RedisACLCommands are the ACL rules of the least-privileged user a redis://
// store works with (README, Remote stores): the commands it sends, nothing else.
var RedisACLCommands = []string{"-@all", "+get", "+set", "+strlen", "+persist", "+hmget", "+hset",
	"+unlink", "+scan", "+eval", "+time", "+select"}

// RedisConfig describes a redis-server to start.
type RedisConfig struct {
	Password string     // requirepass; "" for none
	Users    [][]string // ACL users, each the arguments of a user directive ("name", "on", ">pw", "~keys*", "+cmd", ...)
	TLS      bool       // listen with TLS only (Args must hold the tls-*-file directives)
	Args     []string   // more directives, e.g. "--appendonly", "yes"
}

// Redis is a redis-server on 127.0.0.1 that a test can stop and start again
// on the same port and directory (its RDB and AOF files stay).
type Redis struct {
	Addr string // 127.0.0.1:port
	Dir  string
	cfg  RedisConfig
	t    testing.TB
	bin  string
	p    *Proc
}

// StartRedis starts redis-server with cfg; it is killed when the test ends.
// Without cfg.Args it persists nothing (save "", appendonly no).
func StartRedis(t testing.TB, cfg RedisConfig) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: Tool(t, "redis"), Dir: t.TempDir(), cfg: cfg}
	t.Cleanup(r.Kill)
	onFreePort(t, &r.Addr, r.start)
	return r
}

// Start starts the server again (on the same port and directory) and waits
// until it accepts connections.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

func (r *Redis) start() error {
	r.t.Helper()
	port := PortOf(r.Addr)
	args := []string{"--bind", "127.0.0.1", "--port", port, "--dir", r.Dir, "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--logfile", "", "--loglevel", "warning"}
	if r.cfg.TLS {
		args = append(args, "--port", "0", "--tls-port", port)
	}
	if r.cfg.Password != "" {
		args = append(args, "--requirepass", r.cfg.Password)
	}
	for _, u := range r.cfg.Users {
		args = append(append(args, "--user"), u...)
	}
	args = append(args, r.cfg.Args...) // later directives win
	r.p = StartProc(r.t, "redis-server", nil, r.bin, args...)
	if err := waitReady(r.p, r.Addr, 15*time.Second, DialCheck(r.Addr)); err != nil {
		return err
	}
	if !r.cfg.TLS {
		// The port opens before the dataset is loaded (a restart with an
		// RDB or AOF): until then every data command answers LOADING.
		// PING is allowed while loading (seen: a put right after Start got
		// LOADING), so the check is a data command: EXISTS.
		c := redis.NewClient(&redis.Options{Addr: r.Addr, Password: r.cfg.Password, Protocol: 2, DisableIdentity: true})
		defer c.Close()
		return waitReady(r.p, r.Addr, 15*time.Second, func() error { return c.Exists(context.Background(), "snapvisor:ready-probe").Err() })
	}
	return nil
}

// Stop shuts the server down (TERM: it saves first when it persists).
func (r *Redis) Stop() {
	if r.p != nil {
		r.p.Stop(10 * time.Second)
	}
}

// Kill stops the server at once (SIGKILL: a crash, not a shutdown).
func (r *Redis) Kill() {
	if r.p != nil {
		r.p.Stop(0)
	}
}

// URL is the redis:// URL of prefix on this server, as user when not "".
func (r *Redis) URL(user, prefix string) string {
	scheme := "redis"
	if r.cfg.TLS {
		scheme = "rediss"
	}
	if user != "" {
		user += "@"
	}
	return fmt.Sprintf("%s://%s%s/0?prefix=%s", scheme, user, r.Addr, url.QueryEscape(prefix))
}

// Client is a client of the server's default user, for looking at keys
// behind the store's back; closed when the test ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Password: r.cfg.Password, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// StartRedisACL starts a redis-server with requirepass (RedisPassword) and
// the least-privileged ACL user (RedisACLUser, RedisACLCommands on the keys
// under RedisACLPrefix).
func StartRedisACL(t testing.TB) *Redis {
	user := append([]string{RedisACLUser, "on", ">" + RedisACLPassword, "~" + RedisACLPrefix + "*", "resetchannels"}, RedisACLCommands...)
	return StartRedis(t, RedisConfig{Password: RedisPassword, Users: [][]string{user}})
}

// RedisBackend is redis:// on a redis-server that persists nothing, with a
// second, password-protected one (requirepass and an ACL user) for the
// wrong-credentials case and the remote an entrypoint process uses.
func RedisBackend(t *testing.T) Backend {
	plain := StartRedis(t, RedisConfig{})
	acl := StartRedisACL(t)
	return Backend{
		Name: "redis",
		Open: func(t *testing.T, prefix string) store.Store {
			return Open(t, plain.URL("", prefix), store.Config{})
		},
		BadCreds: func(t *testing.T) (store.Store, string) {
			const wrong = "wrong-password-Xy7Qz"
			return Open(t, acl.URL(RedisACLUser, RedisACLPrefix+":bad"), store.Config{RedisPassword: wrong}), wrong
		},
		Down: func(t *testing.T) store.Store {
			return Open(t, "redis://"+DeadAddr(t)+"/0?prefix=down", store.Config{})
		},
		Remote: func(t *testing.T, prefix string) (string, []string) {
			return acl.URL(RedisACLUser, RedisACLPrefix+":"+prefix), []string{"SNAPVISOR_REDIS_PASSWORD=" + RedisACLPassword}
		},
	}
}
