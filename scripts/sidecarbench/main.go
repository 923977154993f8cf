// Command sidecarbench measures sas-sidecar for scripts/bench: cold start to
// the ready line (beside `sas-sidecar version`, the same binary doing
// nothing), idle resident memory, and GET /v1/me through the sidecar's
// socket beside the same call made directly to the gateway, in one run.
//
//	sidecarbench -sidecar BIN -gateway-bin BIN
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sidecarbench:", err)
		os.Exit(1)
	}
}

func run() error {
	sidecarBin := flag.String("sidecar", "", "sas-sidecar binary")
	gatewayBin := flag.String("gateway-bin", "", "sas-gateway binary")
	starts := flag.Int("starts", 30, "cold starts to measure")
	calls := flag.Int("calls", 2000, "GET /v1/me calls each way")
	flag.Parse()
	if *sidecarBin == "" || *gatewayBin == "" {
		return errors.New("-sidecar and -gateway-bin are required")
	}
	home, err := os.MkdirTemp("/tmp", "sas-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	_ = os.MkdirAll(filepath.Join(home, "run"), 0o700)

	port, redirect := freePort(), freePort()
	dev := exec.Command(*gatewayBin, "dev", "--auto-approve")
	dev.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port}
	if err := dev.Start(); err != nil {
		return err
	}
	defer func() { _ = dev.Process.Kill(); _ = dev.Wait() }()
	gateway := "http://127.0.0.1:" + port
	if err := waitHTTP(gateway + "/healthz"); err != nil {
		return err
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
		"XDG_RUNTIME_DIR=" + filepath.Join(home, "run"), "SAS_PROFILE=local", "SAS_ISSUER=" + gateway + "/dev/idp",
		"SAS_GATEWAY_URL=" + gateway, "SAS_TOKEN_STORE=file", "SAS_REDIRECT_PORT=" + redirect}

	// Cold starts: exec → ready line, against `version` (exec → exit).
	var ready, baseline []time.Duration
	for range *starts {
		t0 := time.Now()
		if err := exec.Command(*sidecarBin, "version").Run(); err != nil {
			return err
		}
		baseline = append(baseline, time.Since(t0))
		sc, err := start(*sidecarBin, env)
		if err != nil {
			return err
		}
		ready = append(ready, sc.readyAfter)
		sc.stop()
	}

	// One long-lived sidecar: sign in, idle, then the socket calls.
	sc, err := start(*sidecarBin, env)
	if err != nil {
		return err
	}
	defer sc.stop()
	if err := sc.login(); err != nil {
		return err
	}
	time.Sleep(time.Second)
	rss, err := rssKB(sc.cmd.Process.Pid)
	if err != nil {
		return err
	}
	token, err := storedToken(home)
	if err != nil {
		return err
	}
	viaSocket := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sc.socket)
	}}}
	direct := &http.Client{}
	var lDirect, lSocket []time.Duration
	for i := range *calls + 200 {
		d1, err := timeGET(direct, gateway+"/v1/me", token)
		if err != nil {
			return err
		}
		d2, err := timeGET(viaSocket, "http://sas/v1/me", "")
		if err != nil {
			return err
		}
		if i >= 200 { // warm-up
			lDirect, lSocket = append(lDirect, d1), append(lSocket, d2)
		}
	}
	for _, l := range [][]time.Duration{ready, baseline, lDirect, lSocket} {
		slices.Sort(l)
	}
	p := func(l []time.Duration, q int) float64 { return float64(l[len(l)*q/100].Microseconds()) / 1000 }
	fmt.Printf("| measure | p50 | p99 / max |\n|---|---:|---:|\n")
	fmt.Printf("| `sas-sidecar version`, exec to exit (baseline: process start) | %.2f ms | %.2f ms |\n", p(baseline, 50), p(baseline, 99))
	fmt.Printf("| `sas-sidecar serve --stdio`, exec to ready line (%d starts) | %.2f ms | %.2f ms |\n", *starts, p(ready, 50), p(ready, 99))
	fmt.Printf("| GET /v1/me directly to the gateway (%d calls, baseline) | %.3f ms | %.3f ms |\n", *calls, p(lDirect, 50), p(lDirect, 99))
	fmt.Printf("| GET /v1/me through the sidecar's socket | %.3f ms | %.3f ms |\n", p(lSocket, 50), p(lSocket, 99))
	fmt.Printf("\nadded by the sidecar at p50: %.3f ms; idle RSS after sign-in: %.1f MB\n", p(lSocket, 50)-p(lDirect, 50), float64(rss)/1024)
	return nil
}

type sidecar struct {
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	lines      *bufio.Scanner
	socket     string
	readyAfter time.Duration
}

func start(bin string, env []string) (*sidecar, error) {
	cmd := exec.Command(bin, "serve", "--stdio")
	cmd.Env = env
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := &sidecar{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(stdout)}
	sc.lines.Buffer(make([]byte, 1<<20), 16<<20)
	if !sc.lines.Scan() {
		return nil, errors.New("no ready line")
	}
	sc.readyAfter = time.Since(t0)
	var ready struct{ Params struct{ Socket string } }
	if err := json.Unmarshal(sc.lines.Bytes(), &ready); err != nil {
		return nil, err
	}
	sc.socket = ready.Params.Socket
	return sc, nil
}

func (s *sidecar) stop() {
	s.stdin.Close()
	_ = s.cmd.Wait()
}

// login signs in over JSON-RPC, following the loginStarted URL like a
// browser (the dev IdP auto-approves).
func (s *sidecar) login() error {
	if _, err := io.WriteString(s.stdin, `{"jsonrpc":"2.0","id":1,"method":"login"}`+"\n"); err != nil {
		return err
	}
	for s.lines.Scan() {
		var m struct {
			ID     *int
			Method string
			Params struct{ URL string }
			Error  any
		}
		_ = json.Unmarshal(s.lines.Bytes(), &m)
		switch {
		case m.Method == "loginStarted":
			go func() {
				if resp, err := http.Get(m.Params.URL); err == nil {
					resp.Body.Close()
				}
			}()
		case m.ID != nil && *m.ID == 1:
			if m.Error != nil {
				return fmt.Errorf("login: %v", m.Error)
			}
			return nil
		}
	}
	return errors.New("the sidecar stopped during login")
}

func timeGET(c *http.Client, url, token string) (time.Duration, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return time.Since(t0), nil
}

func rssKB(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, errors.New("no VmRSS")
}

func storedToken(home string) (string, error) {
	b, err := os.ReadFile(filepath.Join(home, "config", "sas", "tokens-local.json"))
	if err != nil {
		return "", err
	}
	var f struct {
		IDToken string `json:"id_token"`
	}
	err = json.Unmarshal(b, &f)
	return f.IDToken, err
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func waitHTTP(url string) error {
	for range 500 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("sas-gateway dev did not start")
}
