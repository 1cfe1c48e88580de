package store_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"snapvisor/store"
	"snapvisor/store/storetest"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/ssh"
)

// TestSFTPHostKey: an unknown or changed host key and a missing known_hosts
// file are refused with errors naming the store and the variables.
func TestSFTPHostKey(t *testing.T) {
	sv := storetest.StartSSHD(t)
	ctx := storetest.Ctx(t, time.Minute)

	cfg := sv.Config()
	cfg.SFTPKnownHosts = filepath.Join(t.TempDir(), "missing")
	if _, err := store.Open(ctx, sv.URL("x"), cfg, nil); err == nil || !strings.Contains(err.Error(), "SNAPVISOR_SFTP_KNOWN_HOSTS") {
		t.Errorf("missing known_hosts: %v", err)
	}

	other := filepath.Join(t.TempDir(), "key")
	pub := storetest.WriteKey(t, other)
	cfg = sv.Config()
	cfg.SFTPKnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	storetest.MustWrite(t, cfg.SFTPKnownHosts, []byte("[127.0.0.1]:"+storetest.PortOf(sv.Addr)+" "+string(ssh.MarshalAuthorizedKey(pub))))
	s := storetest.Open(t, sv.URL("x"), cfg)
	err := s.Put(ctx, "a", strings.NewReader("a"), 1)
	if err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), s.Name()) {
		t.Errorf("changed host key: %v (permanent %v)", err, store.IsPermanent(err))
	}
	t.Logf("changed host key: %v", err)

	// The explicit opt-out connects, and says so loudly.
	cfg.SFTPInsecureNoHost = true
	core, logs := observer.New(zapcore.WarnLevel)
	s2, err := store.Open(ctx, sv.URL("x"), cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Put(ctx, "a", strings.NewReader("a"), 1); err != nil {
		t.Errorf("insecure put: %v", err)
	}
	if logs.Len() < 2 {
		t.Errorf("insecure opt-out logged %d warnings, want one at open and one per connection", logs.Len())
	}
}
