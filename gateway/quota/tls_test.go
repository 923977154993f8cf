package quota_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway/quota"
)

// tlsRedis starts a private redis-server that speaks only TLS (as Upstash
// does) on 127.0.0.1 with a throwaway certificate, and stops it by PID.
// It returns a rediss:// URL and the CA that signed the certificate.
func tlsRedis(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: run scripts/test, which installs it")
	}
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cmd := exec.Command(path, "--port", "0", "--tls-port", port, "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", certFile,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		c, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{RootCAs: pool})
		if err == nil {
			c.Close()
			break
		}
		if i > 200 {
			t.Fatalf("TLS redis did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "rediss://127.0.0.1:" + port + "/0", pool
}

// TestTLSAndOneRoundTrip runs the limiter against a TLS-only Redis and
// checks, from the server's own view (MONITOR), that an admission and a
// settlement are one command each from the client — one round trip — the
// scripts' own calls being marked "lua".
func TestTLSAndOneRoundTrip(t *testing.T) {
	url, pool := tlsRedis(t)
	opts, err := redis.ParseURL(url) // the parsing sas-gateway applies to REDIS_URL
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil {
		t.Fatal("rediss:// did not enable TLS")
	}
	opts.TLSConfig.RootCAs = pool
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	l := quota.NewLimiter(rdb, quota.LimiterOptions{})
	ctx := context.Background()
	plan := quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 1000, TokensPerDay: 100_000,
		ConcurrentRequests: 5, USDPerDay: 1_000_000, USDPerMonth: 10_000_000}
	res := quota.Reservation{Tokens: 100, Cost: 50}
	a, err := l.Admit(ctx, "user_warm", plan, res) // loads the scripts
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Settle(ctx, a, quota.Settlement{Tokens: 10, Cost: 5}); err != nil {
		t.Fatal(err)
	}

	// MONITOR over a raw TLS connection (go-redis's Monitor races with its
	// own pool): every line is "+<time> [<db> <source>] "cmd" …".
	mon, err := tls.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "rediss://"), "/0"), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	if _, err := mon.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(mon)
	if ok, _ := br.ReadString('\n'); !strings.HasPrefix(ok, "+OK") {
		t.Fatalf("MONITOR answered %q", ok)
	}
	lines := make(chan string, 1000)
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- line
		}
	}()
	for range 25 {
		a, err := l.Admit(ctx, "user_tls", plan, res)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Settle(ctx, a, quota.Settlement{Tokens: 10, Cost: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Ping(ctx).Err(); err != nil { // a marker: everything before it was seen
		t.Fatal(err)
	}
	fromClient, fromScript := map[string]int{}, 0
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("MONITOR ended; saw %v", fromClient)
			}
			_, rest, _ := strings.Cut(line, "[")
			src, cmd, _ := strings.Cut(rest, "] ")
			name := strings.ToLower(strings.Trim(strings.SplitN(strings.TrimSpace(cmd), " ", 2)[0], `"`))
			if strings.HasSuffix(src, " lua") {
				fromScript++
				continue
			}
			fromClient[name]++
			done = name == "ping"
		case <-time.After(5 * time.Second):
			t.Fatalf("MONITOR saw %v", fromClient)
		}
	}
	delete(fromClient, "ping")
	if fromClient["evalsha"] != 50 || len(fromClient) != 1 || fromScript == 0 {
		t.Errorf("25 admissions and settlements sent %v (script calls %d); want exactly 50 evalsha", fromClient, fromScript)
	}
}
