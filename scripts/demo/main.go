// Command demo shows the whole system working on this machine with no cloud
// account: it builds the binaries, starts `sas-gateway dev`, spawns
// `sas-sidecar serve --stdio`, signs in (in the system browser, or through
// the dev IdP's auto-approve with --headless or without a display), then
// calls /v1/me, /v1/limits, /v1/models and streams a chat completion
// through the sidecar's socket. It cleans up everything it started.
//
//	go run ./scripts/demo [--headless] [--keep]
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
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	headless := flag.Bool("headless", false, "sign in without a browser (the dev IdP approves at once)")
	keep := flag.Bool("keep", false, "leave the stack running afterwards, until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{headless: *headless || !hasDisplay(), keep: *keep}
	err := d.run(ctx)
	d.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "\n✗ demo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	headless, keep bool
	dir            string
	procs          []*exec.Cmd
	stdins         []io.Closer // closing a sidecar's stdin is how its app says goodbye
	step           int
}

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Printf("\n%d. %s\n", d.step, fmt.Sprintf(format, args...))
}

func hasDisplay() bool {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		return true
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

func (d *demo) run(ctx context.Context) error {
	var err error
	if d.dir, err = os.MkdirTemp("/tmp", "sas-demo-"); err != nil {
		return err
	}
	d.say("Building sas-gateway, sas-sidecar and sas-login")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", d.dir+string(os.PathSeparator),
		"./gateway/cmd/sas-gateway", "./sidecar/cmd/sas-sidecar", "./sidecar/cmd/sas-login").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build (run the demo from the repository root): %v\n%s", err, out)
	}
	fmt.Println("   built into", d.dir)

	port := "8080"
	if !free(port) {
		port = freePort()
	}
	gateway := "http://127.0.0.1:" + port
	d.say("Starting sas-gateway dev on %s (gateway, dev identity provider, in-memory users, in-process Redis, dev model)", gateway)
	args := []string{"dev"}
	if d.headless {
		args = append(args, "--auto-approve")
	}
	devLog, _ := os.Create(filepath.Join(d.dir, "gateway.log"))
	dev := exec.Command(filepath.Join(d.dir, "sas-gateway"), args...)
	dev.Env = append(os.Environ(), "PORT="+port)
	dev.Stderr = devLog
	if err := d.start(dev); err != nil {
		return err
	}
	if err := waitHTTP(ctx, gateway+"/readyz"); err != nil {
		return fmt.Errorf("sas-gateway dev did not become ready (log: %s): %w", devLog.Name(), err)
	}
	fmt.Println("   ready: GET /readyz → 200")

	d.say("Starting sas-sidecar serve --stdio (profile local, tokens in a demo folder, not your keychain)")
	home := filepath.Join(d.dir, "home")
	_ = os.MkdirAll(filepath.Join(home, "run"), 0o700)
	env := append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_RUNTIME_DIR="+filepath.Join(home, "run"), "SAS_ISSUER="+gateway+"/dev/idp", "SAS_GATEWAY_URL="+gateway,
		"SAS_TOKEN_STORE=file", "SAS_REDIRECT_PORT="+freePort())
	sc, err := d.sidecar(env)
	if err != nil {
		return err
	}
	fmt.Printf("   ready: socket %s, version %s\n", sc.socket, sc.version)

	if d.headless {
		d.say("Signing in (headless: the dev identity provider approves at once)")
	} else {
		d.say("Signing in: your browser opens the dev sign-in page — press Continue")
	}
	if err := sc.login(ctx, d.headless); err != nil {
		return err
	}
	status, err := sc.call(ctx, "status", nil)
	if err != nil {
		return err
	}
	fmt.Println("   signed in:", compact(status))

	client := socketClient(sc.socket)
	for _, path := range []string{"/v1/me", "/v1/limits", "/v1/models", "/v1/templates"} {
		d.say("GET %s through the sidecar's socket (the sidecar adds the token; this program never sees it)", path)
		body, err := get(ctx, client, path)
		if err != nil {
			return err
		}
		fmt.Println("  ", compact(body))
	}

	d.say("Streaming a chat completion through the socket (chunks print as they arrive)")
	if err := stream(ctx, client, "/v1/chat/completions",
		`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"play me a little tune"}]}`, chatDelta); err != nil {
		return err
	}

	d.say("Streaming a Responses API answer through the socket (typed events; text deltas print as they arrive)")
	if err := stream(ctx, client, "/v1/responses",
		`{"model":"gpt-4o-mini","stream":true,"instructions":"Answer like a bard.","input":"sing me a loop"}`, responsesDelta); err != nil {
		return err
	}

	d.say("Running the server's prompt template loop-idea, streamed (the prompt stays on the gateway; the app sends variables)")
	if err := stream(ctx, client, "/v1/templates/loop-idea",
		`{"variables":{"bars":8,"key":"Am","style":"rainy lo-fi"},"stream":true}`, responsesDelta); err != nil {
		return err
	}

	fmt.Println("\n✓ Every step worked.")
	if d.keep {
		fmt.Printf(`
The stack keeps running until Ctrl-C:
  gateway   %[1]s   (log: %[2]s)
  sidecar   socket %[3]s
Try:
  curl --unix-socket %[3]s http://sas/v1/me
  export SAS_ISSUER=%[1]s/dev/idp SAS_GATEWAY_URL=%[1]s SAS_TOKEN_STORE=file HOME=%[4]s XDG_CONFIG_HOME=%[4]s/config
  %[5]s/sas-login --profile local token
  curl -H "Authorization: Bearer $(%[5]s/sas-login --profile local token)" %[1]s/v1/me
  node -e 'import("./sidecar/electron/index.js").then(async ({SasSidecar}) => { … })'   (see README, "From Electron")
`, gateway, devLog.Name(), sc.socket, home, d.dir)
		<-ctx.Done()
		fmt.Println("\nstopping…")
	}
	return nil
}

func (d *demo) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	d.procs = append(d.procs, cmd)
	return nil
}

// cleanup stops what the demo started (the sidecar by closing its stdin,
// the gateway by SIGTERM) and removes the demo folder.
func (d *demo) cleanup() {
	for _, c := range d.stdins {
		_ = c.Close()
	}
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = p.Process.Kill()
		}
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

// sc is the demo's JSON-RPC side of the sidecar.
type sc struct {
	stdin   io.Writer
	lines   chan map[string]any
	socket  string
	version string
	id      int
}

func (d *demo) sidecar(env []string) (*sc, error) {
	cmd := exec.Command(filepath.Join(d.dir, "sas-sidecar"), "serve", "--stdio", "--profile", "local")
	cmd.Env = env
	log, _ := os.Create(filepath.Join(d.dir, "sidecar.log"))
	cmd.Stderr = log
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := d.start(cmd); err != nil {
		return nil, err
	}
	d.stdins = append(d.stdins, stdin)
	s := &sc{stdin: stdin, lines: make(chan map[string]any, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				s.lines <- m
			}
		}
		close(s.lines)
	}()
	select {
	case m, ok := <-s.lines:
		if !ok || m["method"] != "ready" {
			return nil, fmt.Errorf("the sidecar did not start (log: %s)", log.Name())
		}
		p, _ := m["params"].(map[string]any)
		s.socket, _ = p["socket"].(string)
		s.version, _ = p["version"].(string)
		return s, nil
	case <-time.After(10 * time.Second):
		return nil, errors.New("the sidecar was not ready within 10 s")
	}
}

// call sends a request and waits for its answer, acting on notifications
// meanwhile (onNote may be nil).
func (s *sc) callWith(ctx context.Context, method string, params any, onNote func(map[string]any)) (any, error) {
	s.id++
	msg := map[string]any{"jsonrpc": "2.0", "id": s.id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	b, _ := json.Marshal(msg)
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	for {
		select {
		case m, ok := <-s.lines:
			if !ok {
				return nil, errors.New("the sidecar exited")
			}
			if id, ok := m["id"].(float64); ok && int(id) == s.id {
				if e, ok := m["error"].(map[string]any); ok {
					return nil, fmt.Errorf("%s: %v", method, e["message"])
				}
				return m["result"], nil
			}
			if onNote != nil {
				onNote(m)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *sc) call(ctx context.Context, method string, params any) (any, error) {
	return s.callWith(ctx, method, params, nil)
}

func (s *sc) login(ctx context.Context, headless bool) error {
	_, err := s.callWith(ctx, "login", nil, func(m map[string]any) {
		if m["method"] != "loginStarted" {
			return
		}
		url, _ := m["params"].(map[string]any)["url"].(string)
		if headless {
			go func() {
				if resp, err := http.Get(url); err == nil {
					resp.Body.Close()
				}
			}()
			return
		}
		fmt.Println("   if no browser opened, visit:", url)
	})
	return err
}

func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
}

func get(ctx context.Context, c *http.Client, path string) (any, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://sas"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v any
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, compact(v))
	}
	return v, nil
}

// stream posts a streamed request through the socket and prints the text
// that delta finds in each event's data as it arrives.
func stream(ctx context.Context, c *http.Client, path, body string, delta func(data []byte) (string, bool)) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://sas"+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	fmt.Print("   ")
	chunks := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		if text, ok := delta([]byte(data)); ok {
			fmt.Print(text)
			chunks++
		}
	}
	fmt.Printf("\n   (%d chunks)\n", chunks)
	if chunks < 2 {
		return fmt.Errorf("POST %s did not stream", path)
	}
	return sc.Err()
}

// chatDelta is the text of a chat completion chunk.
func chatDelta(data []byte) (string, bool) {
	var chunk struct {
		Choices []struct {
			Delta struct{ Content string } `json:"delta"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &chunk) != nil || len(chunk.Choices) == 0 {
		return "", false
	}
	return chunk.Choices[0].Delta.Content, true
}

// responsesDelta is the text of a Responses API response.output_text.delta
// event.
func responsesDelta(data []byte) (string, bool) {
	var ev struct{ Type, Delta string }
	if json.Unmarshal(data, &ev) != nil || ev.Type != "response.output_text.delta" {
		return "", false
	}
	return ev.Delta, true
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func free(port string) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func waitHTTP(ctx context.Context, url string) error {
	for range 500 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("timed out")
}
