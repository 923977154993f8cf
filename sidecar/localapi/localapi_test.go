//go:build unix

package localapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/localapi"
)

// TestPeerOfAnotherUserIsRefused: a process of another uid that reaches the
// socket (here the directory and socket are opened up on purpose) gets its
// connection closed unanswered; the same program run as this user is
// answered. (Removing the uid comparison once failed no test.)
func TestPeerOfAnotherUserIsRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test runs a child as another user: run it as root (scripts/test in CI does)")
	}
	dir, err := os.MkdirTemp("/tmp", "sas-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "run", "s.sock")
	ln, err := localapi.Listen(sock, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "answered") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	// Let anyone reach the socket: only the uid check stands in the way.
	for _, p := range []string{dir, filepath.Dir(sock)} {
		_ = os.Chmod(p, 0o755)
	}
	_ = os.Chmod(sock, 0o666)
	client := filepath.Join(dir, "peerclient")
	if out, err := exec.Command("go", "build", "-o", client, "./testdata/peerclient").CombinedOutput(); err != nil {
		t.Fatalf("build the peer client: %v\n%s", err, out)
	}
	_ = os.Chmod(client, 0o755)
	run := func(asNobody bool) (string, string) {
		cmd := exec.Command(client, sock)
		if asNobody {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		return out.String(), errb.String()
	}
	if out, errs := run(false); !strings.Contains(out, "answered") {
		t.Fatalf("this user's request was not answered: %q %q", out, errs)
	}
	if out, errs := run(true); out != "" || strings.Contains(errs, "dial:") {
		t.Errorf("another user's request: got %q (stderr %q), want the connection closed unanswered", out, errs)
	}
}
