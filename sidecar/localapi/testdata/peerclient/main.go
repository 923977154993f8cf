// Command peerclient connects to a Unix socket, sends one HTTP request and
// prints what comes back until the server closes the connection: the peer
// of another uid in localapi's tests.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	c, err := net.Dial("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(2)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /sidecar/status HTTP/1.1\r\nHost: sas\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	os.Stdout.Write(b)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
	}
}
