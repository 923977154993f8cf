package main_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium starts a headless Debian Chromium for one test, with the flags a
// root sandbox and a closed network need.
func chromium(t *testing.T) context.Context {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("windows: drives Debian's Chromium, a Linux program that a Windows test binary (under Wine) cannot start")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/test, which installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in a container: the setuid sandbox is unavailable
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(900, 760),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, which lives as long as ctx: no
	// timeout on this one (chromedp's rule); the actions get theirs.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelTimeout)
	return tctx
}

// screenshot saves the page as docs/img/<name>.png when SAS_SCREENSHOTS
// names the folder (scripts/screenshots sets it).
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("SAS_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG (lower: JPEG)
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Error(err)
	}
}

// TestRealBrowserSignIn: sas-login login → Chromium opens the dev IdP's
// consent page → the email is edited, Continue clicked → the loopback
// callback page says signed in → sas-login token works.
func TestRealBrowserSignIn(t *testing.T) {
	s := startDev(t, false)
	ctx := chromium(t)
	var page string
	r := s.login(func(authURL string, _ io.Writer) {
		err := chromedp.Do(ctx,
			chromedp.Navigate(authURL),
			chromedp.WaitVisible(chromedp.ID("email")),
			chromedp.SetValue(chromedp.ID("email"), "ada@example.com"),
			chromedp.SetValue(chromedp.ID("username"), "Ada"),
		)
		if err != nil {
			t.Errorf("consent page: %v", err)
			return
		}
		screenshot(t, ctx, "consent")
		err = chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`button[value="approve"]`)),
			chromedp.WaitVisible(chromedp.CSS(`.status.ok`)),
		)
		if err == nil {
			page, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
		}
		if err != nil {
			t.Errorf("callback page: %v", err)
			return
		}
		screenshot(t, ctx, "signed-in")
	})
	if r.code != 0 || !strings.Contains(r.stderr, "Signed in as ada@example.com") {
		t.Fatalf("sas-login login: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(page, "You're signed in") || !strings.Contains(page, "ada@example.com") {
		t.Errorf("callback page says %q", page)
	}
	url, _ := chromedp.Run(ctx, chromedp.Location())
	if strings.Contains(url, "code=") || !strings.HasSuffix(url, "/callback") {
		t.Errorf("the browser stayed on %s: the code must not stay in the address bar", url)
	}
	tok := s.run(nil, s.env(), "token")
	if tok.code != 0 || strings.Count(tok.stdout, ".") != 2 {
		t.Errorf("token after a browser sign-in: %d %q", tok.code, tok.stderr)
	}
}

// TestRealBrowserCancel: Cancel on the consent page → the CLI exits 1 with
// the reason, and the browser shows why.
func TestRealBrowserCancel(t *testing.T) {
	s := startDev(t, false)
	ctx := chromium(t)
	var page string
	r := s.login(func(authURL string, _ io.Writer) {
		err := chromedp.Do(ctx,
			chromedp.Navigate(authURL),
			chromedp.WaitVisible(chromedp.CSS(`button[value="deny"]`)),
			chromedp.Click(chromedp.CSS(`button[value="deny"]`)),
			chromedp.WaitVisible(chromedp.CSS(`.status.bad`)),
		)
		if err == nil {
			page, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
		}
		if err != nil {
			t.Errorf("cancel: %v", err)
			return
		}
		screenshot(t, ctx, "sign-in-cancelled")
	})
	if r.code != 1 || !strings.Contains(r.stderr, "access_denied") {
		t.Errorf("sas-login login after Cancel: exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(page, "Sign-in failed") || !strings.Contains(page, "cancelled") {
		t.Errorf("callback page says %q", page)
	}
}
