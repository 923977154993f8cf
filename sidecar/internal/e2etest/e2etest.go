// Package e2etest holds what the sidecar's end-to-end tests share: building
// the real binaries once, free loopback ports, a goroutine-safe buffer.
package e2etest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinDirEnv names a directory of binaries built beforehand (name, or
// name.exe on Windows), used instead of building: a test binary running
// under Wine (scripts/test-windows) has no Go toolchain to build with.
const BinDirEnv = "SAS_E2E_BIN_DIR"

// Build builds each name → package into a temp dir for TestMain and
// returns the binaries' paths and a cleanup; it exits the test binary on a
// build failure. With BinDirEnv set it only finds them there.
func Build(pkgs map[string]string) (map[string]string, func()) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return prebuilt(dir, pkgs), func() {}
	}
	dir, err := os.MkdirTemp("", "sas-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins := map[string]string{}
	for name, pkg := range pkgs {
		bins[name] = filepath.Join(dir, exeName(name))
		cmd := exec.Command("go", "build", "-o", bins[name], pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", name, err)
			os.Exit(1)
		}
	}
	return bins, func() { os.RemoveAll(dir) }
}

// prebuilt returns the paths of pkgs' binaries in dir, exiting the test
// binary if one is missing.
func prebuilt(dir string, pkgs map[string]string) map[string]string {
	bins := map[string]string{}
	for name := range pkgs {
		p := filepath.Join(dir, exeName(name))
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "%s=%s: %v\n", BinDirEnv, dir, err)
			os.Exit(1)
		}
		bins[name] = p
	}
	return bins
}

// exeName is name as an executable's file name: Windows runs only files
// with an executable extension.
func exeName(name string) string {
	if runtime.GOOS == "windows" {
		return name + ".exe"
	}
	return name
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// WaitHTTP waits up to 10 s for url to answer 200.
func WaitHTTP(t testing.TB, url string, logs fmt.Stringer) {
	t.Helper()
	for i := 0; ; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if i > 500 {
			t.Fatalf("%s did not answer 200 within 10 s:\n%s", url, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitFor polls cond until it holds, failing the test after 10 s.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Buffer is a strings.Builder safe for concurrent writers.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }

// String returns what was written so far.
func (s *Buffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
