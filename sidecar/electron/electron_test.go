// Package electron_test runs the Node.js client's own tests (node --test)
// against the real sas-sidecar binary and `sas-gateway dev`, so that
// scripts/test runs them.
package electron_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
)

func TestNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: run scripts/test, which installs Node.js")
	}
	dir := t.TempDir()
	for name, pkg := range map[string]string{"sas-sidecar": "../cmd/sas-sidecar", "sas-gateway": "../../gateway/cmd/sas-gateway"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	port, redirect := e2etest.FreePort(t), e2etest.FreePort(t)
	dev := exec.Command(filepath.Join(dir, "sas-gateway"), "dev", "--auto-approve")
	dev.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port}
	devLog := &e2etest.Buffer{}
	dev.Stderr = devLog
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dev.Process.Kill(); _ = dev.Wait() }()
	base := "http://127.0.0.1:" + port
	e2etest.WaitHTTP(t, base+"/healthz", devLog)
	cmd := exec.Command(node, "--test", "--test-reporter=spec", "test/")
	cmd.Env = append(os.Environ(), "SAS_SIDECAR_BIN="+filepath.Join(dir, "sas-sidecar"), "SAS_TEST_GATEWAY="+base, "SAS_TEST_REDIRECT_PORT="+redirect)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("node --test failed: %v\nsas-gateway dev:\n%s", err, devLog.String())
	}
}
