// Command pause is the pod sandbox process of the lab's containerd nodes (its
// sandbox_image): it holds the pod's namespaces open as PID 1 and does nothing
// else. It exits 0 on SIGINT or SIGTERM, so a sandbox stops promptly, and as
// PID 1 of a shared PID namespace it reaps orphaned children that the kernel
// re-parents to it, so they do not stay zombies.
//
// Standard library only and built static (CGO_ENABLED=0): the image holds
// this one file and nothing else.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("tandem-pause 1")
		return
	}
	if os.Getpid() != 1 {
		// Still useful (tests run it directly), but say so: reaping only
		// catches orphans when we are the namespace's init.
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}

	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// A child may have exited before Notify took effect; its SIGCHLD is then
	// lost, so reap once up front.
	reap()
	for sig := range signals {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "pause: %v, exiting\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every child that has exited. Signals coalesce (several exits
// may arrive as one SIGCHLD), so it loops until no exited child is left.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
