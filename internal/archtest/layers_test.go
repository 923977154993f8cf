// Package archtest checks the layering docs/architecture.md describes:
// no package imports one of a higher layer.
package archtest

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/signals-sorcery/sas/"

// layer ranks a package (its path without the module): a package may
// import packages of its own layer or lower ones, never higher.
func layer(p string) (int, bool) {
	switch {
	case strings.HasPrefix(p, "shared/"):
		return 0, true
	case p == "gateway", strings.HasPrefix(p, "gateway/tokenizer"), p == "gateway/ttlcache", p == "gateway/userbus",
		p == "gateway/userfeed", p == "gateway/errreport", p == "gateway/metrics", p == "gateway/redisclient":
		return 1, true
	case p == "gateway/app", p == "gateway/devstack", strings.HasPrefix(p, "gateway/internal/"):
		return 3, true
	case strings.HasPrefix(p, "gateway/cmd/"), strings.HasPrefix(p, "sidecar/cmd/"), strings.HasPrefix(p, "scripts/"):
		return 4, true // commands, and the tools that drive them
	case strings.HasPrefix(p, "sidecar/internal/"):
		return 3, true // test helpers of the sidecar's end-to-end tests
	case strings.HasPrefix(p, "gateway/"), strings.HasPrefix(p, "sidecar/"), strings.HasPrefix(p, "deploy/"),
		strings.HasPrefix(p, "internal/"):
		return 2, true
	}
	return 0, false
}

// TestLayers: every package's imports (tests' imports excepted) sit at
// or below its layer; shared imports nothing of the programs'; the
// sidecar's product code imports nothing of the gateway's.
func TestLayers(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg := strings.TrimPrefix(f[0], module)
		l, ok := layer(pkg)
		if !ok {
			t.Errorf("%s: no layer (add it to layer and docs/architecture.md)", pkg)
			continue
		}
		n++
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			dl, _ := layer(dep)
			switch {
			case dl > l:
				t.Errorf("%s (layer %d) imports %s (layer %d): a package may not import one above it", pkg, l, dep, dl)
			case strings.HasPrefix(pkg, "shared/") && !strings.HasPrefix(dep, "shared/"):
				t.Errorf("%s imports %s: shared imports nothing of the programs'", pkg, dep)
			case strings.HasPrefix(pkg, "sidecar/") && !strings.HasPrefix(pkg, "sidecar/internal/") && strings.HasPrefix(dep, "gateway"):
				t.Errorf("%s imports %s: the sidecar's product code imports nothing of the gateway's", pkg, dep)
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d packages listed", n)
	}
}
