package storetest

import (
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestWaitReady_PortTaken: a server whose port another process took (a
// bind to port 0 elsewhere got FreePort's port before the server bound it)
// is not ready, though a check reaches the other listener: waitReady says
// errPortTaken, and onFreePort starts it again on another port.
func TestWaitReady_PortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	port, _ := strconv.Atoi(PortOf(addr))
	if got := listenerOf(os.Getpid(), port); got != listenerOurs {
		t.Errorf("listenerOf(this process) = %v, want ours", got)
	}
	sleep := StartProc(t, "sleep", nil, "sleep", "60") // a "server" that never listens
	t.Cleanup(func() { sleep.Stop(0) })
	if got := listenerOf(sleep.Cmd.Process.Pid, port); got != listenerOther {
		t.Errorf("listenerOf(another process) = %v, want other", got)
	}
	err = waitReady(sleep, addr, 10*time.Second, DialCheck(addr))
	if !errors.Is(err, errPortTaken) || !sleep.Exited() {
		t.Errorf("waitReady with the port taken: %v (stopped: %v), want errPortTaken and the process stopped", err, sleep.Exited())
	}

	var tried []string
	var got string
	onFreePort(t, &got, func() error {
		tried = append(tried, got)
		if len(tried) == 1 {
			return err // taken, the first time
		}
		return nil
	})
	if len(tried) != 2 || got != tried[1] {
		t.Errorf("onFreePort tried %v and settled on %s, want a second port after errPortTaken", tried, got)
	}
}

// TestDeadAddr: nothing answers at DeadAddr's address, and nothing else can
// listen there until the test ends.
func TestDeadAddr(t *testing.T) {
	addr := DeadAddr(t)
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatalf("a connection to DeadAddr %s was accepted", addr)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Fatalf("listening on DeadAddr %s succeeded: its port is not held", addr)
	}
}
