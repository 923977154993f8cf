// The Keychain store is macOS's, and its stand-in for /usr/bin/security is
// a bash script, which Windows cannot run: these tests run on Unix only.

//go:build !windows

package tokens_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zalando/go-keyring"

	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// fakeSecurity is a stand-in for macOS's /usr/bin/security that keeps items
// as files (the value exactly as `security find-generic-password -w` would
// print it) and logs every command line it was given.
const fakeSecurity = `#!/bin/bash
store="$FAKE_KEYCHAIN"
echo "argv: $*" >> "$store/log"
item() { mkdir -p "$store/items/$1"; echo "$store/items/$1/$2"; }
parse() { # -U -s S -a A -w W
  while [ $# -gt 0 ]; do case "$1" in -s) S="$2"; shift;; -a) A="$2"; shift;; -w) W="$2"; shift;; esac; shift; done
}
case "$1" in
  -i)
    while IFS= read -r line; do
      eval "set -- $line"
      cmd="$1"; shift; parse "$@"
      [ "$cmd" = add-generic-password ] || { echo "unknown $cmd"; exit 1; }
      printf '%s' "$W" > "$(item "$S" "$A")"
    done ;;
  find-generic-password)
    shift; parse "$@"; f="$(item "$S" "$A")"
    [ -f "$f" ] || { echo "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain."; exit 44; }
    cat "$f"; echo ;;
  delete-generic-password)
    shift; parse "$@"; f="$(item "$S" "$A")"
    [ -f "$f" ] || { echo "security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain."; exit 44; }
    rm "$f"; echo "password has been deleted." ;;
  *) echo "unknown command $1"; exit 1 ;;
esac
`

func fakeKeychain(t *testing.T) (tokens.Keychain, string) {
	t.Helper()
	dir := tempdir.New(t)
	bin := filepath.Join(dir, "security")
	if err := os.WriteFile(bin, []byte(fakeSecurity), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_KEYCHAIN", dir)
	return tokens.Keychain{Security: bin}, dir
}

// TestKeychainStoresValuesAsTheyAre: what `security find-generic-password
// -w` prints is the token itself, values never appear in a command's
// arguments, and items written by go-keyring (base64 or hex) still read.
func TestKeychainStoresValuesAsTheyAre(t *testing.T) {
	kc, dir := fakeKeychain(t)
	token := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEifQ.c2ln-_x"
	if err := kc.Set("sas-prod", "id_token", token); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "items", "sas-prod", "id_token"))
	if err != nil || string(raw) != token {
		t.Fatalf("the Keychain holds %q (%v), want the token as it is", raw, err)
	}
	if got, err := kc.Get("sas-prod", "id_token"); err != nil || got != token {
		t.Errorf("Get = %q, %v", got, err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "log"))
	if strings.Contains(string(log), token) {
		t.Errorf("the value was passed as an argument:\n%s", log)
	}
	if !strings.Contains(string(log), "argv: find-generic-password -s sas-prod -a id_token -w") {
		t.Errorf("commands:\n%s", log)
	}
	// Quoting: a value with quotes and spaces survives `security -i`.
	odd := `it's "odd" value $HOME ; rm -rf /`
	if err := kc.Set("sas-prod", "odd", odd); err != nil {
		t.Fatal(err)
	}
	if got, _ := kc.Get("sas-prod", "odd"); got != odd {
		t.Errorf("quoted value came back as %q", got)
	}
	// Items written by go-keyring.
	for form, stored := range map[string]string{"base64": "go-keyring-base64:dG9rZW4=", "hex": "go-keyring-encoded:746f6b656e"} {
		_ = os.WriteFile(filepath.Join(dir, "items", "sas-prod", "old"), []byte(stored), 0o600)
		if got, err := kc.Get("sas-prod", "old"); err != nil || got != "token" {
			t.Errorf("go-keyring's %s form read as %q, %v", form, got, err)
		}
	}
	if _, err := kc.Get("sas-prod", "missing"); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("missing item: %v", err)
	}
	if err := kc.Delete("sas-prod", "id_token"); err != nil {
		t.Fatal(err)
	}
	if err := kc.Delete("sas-prod", "id_token"); !errors.Is(err, keyring.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	if err := kc.Set("sas-prod", "big", strings.Repeat("x", 5000)); !errors.Is(err, keyring.ErrSetDataTooBig) {
		t.Errorf("a line over security -i's 4096 bytes: %v", err)
	}
}

// TestKeyringStoreOnKeychain: the token store's behaviour over the Keychain
// commands (long tokens split into parts included), and the refresh token
// readable as it is.
func TestKeyringStoreOnKeychain(t *testing.T) {
	kc, dir := fakeKeychain(t)
	roundTrip(t, tokens.NewKeyringStore("prod", kc))
	store := tokens.NewKeyringStore("prod", kc)
	set := sample(300)
	if err := store.Save(context.Background(), set); err != nil {
		t.Fatal(err)
	}
	if rt, _ := os.ReadFile(filepath.Join(dir, "items", "sas-prod", "refresh_token")); string(rt) != set.RefreshToken {
		t.Errorf("refresh_token item = %q", rt)
	}
}
