package hostcheck

import (
	"net"
	"strings"
	"testing"
)

func TestBusyPortIsAFailureNamingTheFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r := Run(Options{Ports: []Port{{Addr: l.Addr().String(), Flag: "--api-port", Why: "Kubernetes API"}}, DataDir: t.TempDir()})
	err = r.Err()
	if err == nil || !strings.Contains(err.Error(), "is in use") || !strings.Contains(err.Error(), "--api-port") {
		t.Fatalf("want a port-in-use error naming --api-port, got %v", err)
	}
}

func TestDiskBelowMinimumFails(t *testing.T) {
	r := Run(Options{DataDir: t.TempDir(), MinFreeBytes: 1 << 62})
	for _, c := range r {
		if c.Name == "disk" {
			if c.OK || !strings.Contains(c.Detail, "--data-dir") {
				t.Fatalf("disk check = %+v", c)
			}
			return
		}
	}
	t.Fatal("no disk check in report")
}

func TestReportErrIgnoresWarnings(t *testing.T) {
	r := Report{{Name: "a", OK: false, Warning: true, Detail: "meh"}, {Name: "b", OK: true}}
	if r.Err() != nil {
		t.Fatal("warnings must not fail the report")
	}
}
