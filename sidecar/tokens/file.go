package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FileStore keeps a Set in a 0600 JSON file in a 0700 directory, and the
// user's Profile in another beside it: for headless machines without a
// keyring, chosen explicitly with --token-store file, never as a silent
// fallback.
type FileStore struct{ path, profilePath string }

// NewFileStore returns the store of profile under dir (see Dir).
func NewFileStore(dir, profile string) *FileStore {
	return &FileStore{path: filepath.Join(dir, "tokens-"+profile+".json"),
		profilePath: filepath.Join(dir, "profile-"+profile+".json")}
}

// Dir returns the per-user directory of sas-login and the sidecar
// (~/.config/sas on Linux, ~/Library/Application Support/sas on macOS,
// %AppData%\sas on Windows), creating it with mode 0700.
func Dir() (string, error) {
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user config dir: %w", err)
	}
	dir := filepath.Join(base, "sas")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// MkdirAll keeps the mode of a directory that exists: tighten it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// fileSet is the file's JSON. Its expiry is for people who read the file:
// the expiry is the ID token's own (Set.Expiry).
type fileSet struct {
	IDToken      string    `json:"id_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
}

// Load implements Store.
func (f *FileStore) Load(context.Context) (Set, error) {
	b, err := readFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Set{}, ErrNotFound
	}
	if err != nil {
		return Set{}, err
	}
	var s fileSet
	if err := json.Unmarshal(b, &s); err != nil || s.IDToken == "" {
		return Set{}, fmt.Errorf("token file %s is damaged: run sas-login logout, then sign in again", f.path)
	}
	return Set{IDToken: s.IDToken, RefreshToken: s.RefreshToken}, nil
}

// Save implements Store.
func (f *FileStore) Save(_ context.Context, s Set) error {
	b, err := json.Marshal(fileSet{IDToken: s.IDToken, RefreshToken: s.RefreshToken, Expiry: s.Expiry().UTC()})
	if err != nil {
		return err
	}
	return writeFile(f.path, b)
}

// LoadProfile implements Store.
func (f *FileStore) LoadProfile(context.Context) (Profile, error) {
	b, err := readFile(f.profilePath)
	if errors.Is(err, fs.ErrNotExist) {
		return Profile{}, ErrNotFound
	}
	if err != nil {
		return Profile{}, err
	}
	return decodeProfile(string(b))
}

// SaveProfile implements Store.
func (f *FileStore) SaveProfile(_ context.Context, p Profile) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return writeFile(f.profilePath, b)
}

// writeFile writes a temp file with mode 0600 and renames it over path, so
// a reader never sees half a file.
func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tokens-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return retryTransient(func() error { return os.Rename(tmp.Name(), path) })
}

// readFile reads path, waiting out another process's rename over it.
func readFile(path string) (b []byte, err error) {
	err = retryTransient(func() error {
		b, err = os.ReadFile(path)
		return err
	})
	return b, err
}

// retryTransient runs op until it succeeds, fails for good, or has failed
// transiently (another process had the file open) for about a second.
func retryTransient(op func() error) error {
	var err error
	for range 50 {
		if err = op(); !transient(err) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Delete implements Store. The tokens go first: without them nobody is
// signed in, whatever a deletion cut short leaves.
func (f *FileStore) Delete(context.Context) error {
	for _, p := range []string{f.path, f.profilePath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
