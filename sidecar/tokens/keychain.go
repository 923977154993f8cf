package tokens

import (
	"encoding/base64"
	"encoding/hex"
	"io"
	"os/exec"
	"strings"

	"github.com/zalando/go-keyring"
)

// Keychain is the macOS Keychain through the `security` command, storing
// each value as it is, so that
//
//	security find-generic-password -s sas-prod -a id_token -w
//
// prints the token itself (the "curl with a Keychain-extracted token" path
// of the contract). zalando/go-keyring wraps every value as
// "go-keyring-base64:…"; values in that form, and its older hex form, are
// still read. Our values are JWTs and refresh tokens: ASCII without
// newlines, which the Keychain returns unencoded.
//
// It builds the same commands on every OS, so tests run it against a fake
// `security` on Linux.
type Keychain struct {
	// Security is the path of the security command (/usr/bin/security).
	Security string
}

// Prefixes of go-keyring's encodings, read for items it wrote.
const (
	goKeyringBase64 = "go-keyring-base64:"
	goKeyringHex    = "go-keyring-encoded:"
)

// maxInteractiveLine is what `security -i` accepts on one line.
const maxInteractiveLine = 4096

// Get reads an item. Errors: keyring.ErrNotFound, or the command's failure.
func (k Keychain) Get(service, account string) (string, error) {
	out, err := exec.Command(k.Security, "find-generic-password", "-s", service, "-a", account, "-w").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "could not be found") {
			return "", keyring.ErrNotFound
		}
		return "", commandError("find-generic-password", out, err)
	}
	v := strings.TrimRight(string(out), "\r\n")
	switch {
	case strings.HasPrefix(v, goKeyringBase64):
		b, err := base64.StdEncoding.DecodeString(v[len(goKeyringBase64):])
		return string(b), err
	case strings.HasPrefix(v, goKeyringHex):
		b, err := hex.DecodeString(v[len(goKeyringHex):])
		return string(b), err
	}
	return v, nil
}

// Set writes an item, replacing it. The value goes to `security -i` on
// stdin, never in an argument: other processes can read a process's
// arguments. Errors: keyring.ErrSetDataTooBig, or the command's failure.
func (k Keychain) Set(service, account, value string) error {
	line := "add-generic-password -U -s " + quote(service) + " -a " + quote(account) + " -w " + quote(value) + "\n"
	if len(line) > maxInteractiveLine {
		return keyring.ErrSetDataTooBig
	}
	cmd := exec.Command(k.Security, "-i")
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	_, werr := io.WriteString(in, line)
	in.Close()
	if err := cmd.Wait(); err != nil {
		return commandError("add-generic-password", []byte(out.String()), err)
	}
	return werr
}

// Delete removes an item. Errors: keyring.ErrNotFound, or the command's
// failure.
func (k Keychain) Delete(service, account string) error {
	out, err := exec.Command(k.Security, "delete-generic-password", "-s", service, "-a", account).CombinedOutput()
	if err != nil && strings.Contains(string(out), "could not be found") {
		return keyring.ErrNotFound
	}
	if err != nil {
		return commandError("delete-generic-password", out, err)
	}
	return nil
}

// quote makes s one word for `security -i`, which splits its lines as a
// shell does: the word in single quotes, each single quote inside it closed,
// escaped with a backslash and reopened.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandError reports a failed `security` call with the first line it
// printed (its messages name the item, never the value).
func commandError(what string, out []byte, err error) error {
	msg, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return &securityError{what: what, msg: msg, err: err}
}

type securityError struct {
	what, msg string
	err       error
}

func (e *securityError) Error() string {
	return "security " + e.what + ": " + e.err.Error() + ": " + e.msg
}

func (e *securityError) Unwrap() error { return e.err }
