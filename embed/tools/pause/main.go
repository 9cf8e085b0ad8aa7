// Command pause is the sandbox process of every pod on a gluebox node: it holds the pod's
// namespaces open, reaps orphaned children (it is PID 1 when the pod shares its PID namespace) and
// exits on SIGINT or SIGTERM. gluebox builds it and imports it as the node's pause image, so the
// node needs nothing from the internet.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("gluebox pause 1")
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
