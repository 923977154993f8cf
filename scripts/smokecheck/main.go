// Command smokecheck is scripts/smoke: the manual smoke test, automated. It
// gets an ID token with sas-login (signing in when there is none), then
// checks /healthz, /readyz, /v1/me, /v1/limits and /v1/usage of a gateway, printing
// PASS or FAIL per step; exit 1 if any failed.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: smokecheck <sas-login binary> <gateway-url>")
		os.Exit(2)
	}
	login, gateway := os.Args[1], strings.TrimSuffix(os.Args[2], "/")
	client := &http.Client{Timeout: 15 * time.Second}
	fails := 0
	step := func(name, detail string, ok bool) {
		verdict := "PASS"
		if !ok {
			verdict = "FAIL"
			fails++
		}
		fmt.Printf("%s %-8s %s\n", verdict, name, detail)
	}

	tok, err := token(login, gateway)
	step("token", describe(tok, err), err == nil)
	for _, c := range []struct {
		name, path string
		auth       bool
		check      func(map[string]any) bool
	}{
		{"healthz", "/healthz", false, func(m map[string]any) bool { return m["status"] == "ok" }},
		{"readyz", "/readyz", false, func(m map[string]any) bool { return m["status"] == "ok" }},
		{"me", "/v1/me", true, func(m map[string]any) bool { return m["id"] != nil && m["plan"] != nil }},
		// The request and token limits, plus the dollar limits when the
		// plan sets them.
		{"limits", "/v1/limits", true, func(m map[string]any) bool { l, _ := m["limits"].([]any); return len(l) >= 3 && len(l) <= 5 }},
		{"usage", "/v1/usage", true, func(m map[string]any) bool { _, ok := m["total"].(map[string]any); return ok }},
	} {
		req, _ := http.NewRequest("GET", gateway+c.path, nil)
		if c.auth {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			step(c.name, err.Error(), false)
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		step(c.name, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(b)), resp.StatusCode == 200 && c.check(m))
	}
	if fails > 0 {
		fmt.Printf("%d step(s) failed\n", fails)
		os.Exit(1)
	}
	fmt.Println("all steps passed")
}

// token asks sas-login for a token, signing in (browser flow) when needed.
func token(login, gateway string) (string, error) {
	env := append(os.Environ(), "SAS_GATEWAY_URL="+gateway)
	out, err := run(env, login, "token")
	if err == nil {
		return out, nil
	}
	fmt.Fprintln(os.Stderr, "No valid token: signing in with sas-login…")
	cmd := exec.Command(login, "login", "--timeout", "3m")
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = env, os.Stdin, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("sas-login login: %w", err)
	}
	return run(env, login, "token")
}

func run(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %s", err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func describe(tok string, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("ID token obtained (%d bytes)", len(tok))
}
