package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"snapvisor/internal/fsx"
	"snapvisor/snapshot"
	"snapvisor/store"
)

// Leases make a remote prefix single-writer per snapshot name: two
// containers with a copied environment (a scaled Compose service, a
// Deployment with two replicas) would otherwise push same-named snapshots
// into one place and rotate each other's away. The writer holding the lease
// object "<name>.lease" may push and rotate snapshots named name there;
// another live writer is refused (LeaseError) until the lease expires or is
// taken over (TakeLease, BreakLease).
//
// A Store has no compare-and-swap, so a lease is taken by writing it and
// reading it back: the writer whose lease is read back holds it. A fresh
// acquisition (no lease, or an expired or broken one) waits leaseSettle
// before the read-back, so that a competitor that read the old state at the
// same moment has written its own lease by then and one of the two sees the
// other's. The race that remains: two writers whose read, write and read-back
// interleave across more than leaseSettle (a very slow write) both believe
// they hold it, for one run. That is harmless: each pushes a complete,
// checksummed snapshot of its own under its own time stamp, Push never
// replaces another writer's snapshot of the same second (ErrExists), and at
// its next renewal the writer whose lease was overwritten reads the other's
// and stops.

// leaseSuffix ends a lease key: "<name>.lease" has no time stamp, so it never
// parses as a snapshot name, and no leading dot, so it is not a temporary.
const leaseSuffix = ".lease"

// DefaultLeaseTTL is the lease lifetime when none is configured
// (SNAPVISOR_LEASE_TTL's default).
const DefaultLeaseTTL = 10 * time.Minute

// leaseSettle is the wait between writing a fresh lease and reading it back.
const leaseSettle = 500 * time.Millisecond

// maxLeaseFile bounds what is read of a lease object.
const maxLeaseFile = 4096

// LeaseKey returns the key of the lease of the snapshots named name.
func LeaseKey(name string) string { return name + leaseSuffix }

// Writer identifies a process that writes snapshots: the host name and a
// random instance id made at the process's start (snapshot.InstanceID).
type Writer struct {
	Host     string `json:"host"`
	Instance string `json:"instance"`
}

// ThisWriter returns this process's identity.
func ThisWriter() Writer {
	host, _ := os.Hostname()
	return Writer{Host: host, Instance: snapshot.InstanceID()}
}

func (w Writer) String() string { return fmt.Sprintf("%s (instance %s)", w.Host, w.Instance) }

// Lease is the content of a lease object, JSON.
type Lease struct {
	Writer
	Name     string    `json:"name"`     // the snapshot name it is for
	Acquired time.Time `json:"acquired"` // when this writer took it
	Renewed  time.Time `json:"renewed"`  // its last renewal
	Expires  time.Time `json:"expires"`  // after this, another writer may take it
}

// Expired reports whether the lease has expired at now (the holder's clock
// wrote Expires: hosts' clocks must agree to well within the TTL, as NTP
// keeps them).
func (l Lease) Expired(now time.Time) bool { return !now.Before(l.Expires) }

// LeaseError means another live writer holds the lease of a snapshot name on
// a remote: this writer must neither push nor rotate that name there.
type LeaseError struct {
	Remote string // the store's Name()
	Lease  Lease  // the holder's lease
}

func (e *LeaseError) Error() string {
	l := e.Lease
	return fmt.Sprintf("%s: another writer holds the lease of snapshots named %s there: %s, until %s (renewed %s); "+
		"not pushing or rotating there, so that two writers never mix or delete each other's snapshots "+
		"(local snapshots go on). Give each instance its own SNAPVISOR_NAME or remote prefix; "+
		"or, if this instance replaces that one, run `entrypoint takeover` here (or wait until the lease expires)",
		e.Remote, l.Name, l.Writer, l.Expires.UTC().Format(time.RFC3339), l.Renewed.UTC().Format(time.RFC3339))
}

// ReadLease returns the lease of the snapshots named name on s; ok is false
// when there is none, or when the object is not a valid lease for name (it
// is then treated as absent and overwritten by the next acquisition).
func ReadLease(ctx context.Context, s store.Store, name string) (l Lease, ok bool, err error) {
	key := LeaseKey(name)
	err = store.Retry(ctx, s, "get "+key, func(ctx context.Context, s store.Store) error {
		rc, err := s.Get(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			ok = false
			return nil
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err := io.ReadAll(io.LimitReader(rc, maxLeaseFile+1))
		if err != nil {
			var se *store.Error
			if !errors.As(err, &se) {
				err = &store.Error{Store: s.Name(), Op: "get", Key: key, Err: err}
			}
			return err
		}
		l = Lease{}
		ok = len(b) <= maxLeaseFile && json.Unmarshal(b, &l) == nil && l.Name == name && l.Instance != "" && !l.Expires.IsZero()
		return nil
	})
	if err != nil || !ok {
		return Lease{}, false, err
	}
	return l, true, nil
}

// AcquireLease takes the lease of the snapshots named name on s for w, or
// renews it when w holds it already, valid for ttl from now. It fails with
// a *LeaseError when another writer holds a lease that has not expired at
// now (or won the race for it); other errors are the store's.
func AcquireLease(ctx context.Context, s store.Store, name string, w Writer, ttl time.Duration, now time.Time) (Lease, error) {
	cur, ok, err := ReadLease(ctx, s, name)
	if err != nil {
		return Lease{}, err
	}
	ours := ok && cur.Writer == w
	if ok && !ours && !cur.Expired(now) {
		leaseConflict(s, true)
		return Lease{}, &LeaseError{Remote: s.Name(), Lease: cur}
	}
	l := newLease(w, name, ttl, now, cur, ours)
	// Our own expired lease is up for grabs too: settle as for a fresh one.
	return l, writeLease(ctx, s, l, !ours || cur.Expired(now))
}

// newLease is w's lease of name from now for ttl; a renewal (renew: cur is
// w's) keeps cur's acquisition time.
func newLease(w Writer, name string, ttl time.Duration, now time.Time, cur Lease, renew bool) Lease {
	now = now.UTC().Round(0)
	l := Lease{Writer: w, Name: name, Acquired: now, Renewed: now, Expires: now.Add(ttl)}
	if renew {
		l.Acquired = cur.Acquired
	}
	return l
}

// TakeLease takes the lease of the snapshots named name on s for w whoever
// holds it (`entrypoint takeover`): the previous holder, if any, is refused
// at its next renewal. It returns the lease replaced (ok false: none).
func TakeLease(ctx context.Context, s store.Store, name string, w Writer, ttl time.Duration, now time.Time) (prev Lease, ok bool, err error) {
	prev, ok, err = ReadLease(ctx, s, name)
	if err != nil {
		return prev, ok, err
	}
	ours := ok && prev.Writer == w
	return prev, ok, writeLease(ctx, s, newLease(w, name, ttl, now, prev, ours), !ours)
}

// writeLease writes l and reads it back: l's writer holds the lease only if
// its own lease is read back. fresh waits leaseSettle in between (see above).
func writeLease(ctx context.Context, s store.Store, l Lease, fresh bool) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	b = append(b, '\n')
	key := LeaseKey(l.Name)
	if err := s.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
		return err
	}
	if fresh {
		if err := fsx.Sleep(ctx, leaseSettle); err != nil {
			return err
		}
	}
	got, ok, err := ReadLease(ctx, s, l.Name)
	if err != nil {
		return err
	}
	if !ok {
		// Deleted right after it was written (`entrypoint takeover` elsewhere
		// broke it): not held now; the next attempt takes it or is refused.
		return fmt.Errorf("%s: lease %s vanished right after it was written (broken by a takeover?): not pushing or rotating there this time", s.Name(), key)
	}
	if got.Writer != l.Writer {
		leaseConflict(s, true)
		return &LeaseError{Remote: s.Name(), Lease: got}
	}
	leaseConflict(s, false)
	return nil
}

// ReleaseLease deletes the lease of the snapshots named name on s if w holds
// it (a clean exit: the next writer takes over at once). released is false
// when w did not hold it; another writer's lease is never touched.
func ReleaseLease(ctx context.Context, s store.Store, name string, w Writer) (released bool, err error) {
	cur, ok, err := ReadLease(ctx, s, name)
	if err != nil || !ok || cur.Writer != w {
		return false, err
	}
	if err := s.Delete(ctx, LeaseKey(name)); err != nil {
		return false, err
	}
	return true, nil
}

// BreakLease deletes the lease of the snapshots named name on s whoever
// holds it, so that the next writer to ask takes it. It returns the lease
// deleted (ok false: there was none).
func BreakLease(ctx context.Context, s store.Store, name string) (prev Lease, ok bool, err error) {
	prev, ok, err = ReadLease(ctx, s, name)
	if err != nil {
		return prev, ok, err
	}
	// Also a key that holds no valid lease: it is in the way all the same.
	if err := s.Delete(ctx, LeaseKey(name)); err != nil {
		return prev, ok, err
	}
	return prev, ok, nil
}

// TTL returns how long a lease written on r lasts: r.LeaseTTL (OpenAll
// sets SNAPVISOR_LEASE_TTL), or DefaultLeaseTTL.
func (r Remote) TTL() time.Duration {
	if r.LeaseTTL > 0 {
		return r.LeaseTTL
	}
	return DefaultLeaseTTL
}

// leaseConflict records on s's metrics (if any) whether another writer holds its lease.
func leaseConflict(s store.Store, held bool) {
	if m, ok := store.As[*store.Instrumented](s); ok {
		m.LeaseConflict(held)
	}
}
