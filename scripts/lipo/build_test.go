package main

import (
	"debug/macho"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildSidecar runs scripts/build-sidecar for three targets: the Linux
// binary runs and reports the stamped version, and the macOS universal
// binary holds both architectures.
func TestBuildSidecar(t *testing.T) {
	dist := t.TempDir()
	cmd := exec.Command("../build-sidecar")
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION=v9.8.7-test", "TARGETS=linux/amd64 darwin/arm64 darwin/amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-sidecar: %v\n%s", err, out)
	}
	for _, name := range []string{"sas-sidecar", "sas-login"} {
		out, err := exec.Command(filepath.Join(dist, "linux-amd64", name), "version").Output()
		if err != nil || strings.TrimSpace(string(out)) != "v9.8.7-test" {
			t.Errorf("%s version = %q, %v", name, out, err)
		}
		fat, err := macho.OpenFat(filepath.Join(dist, "darwin-universal", name))
		if err != nil {
			t.Fatalf("%s universal: %v", name, err)
		}
		cpus := map[macho.Cpu]bool{}
		for _, a := range fat.Arches {
			cpus[a.Cpu] = true
			if a.Offset%(1<<alignBits) != 0 {
				t.Errorf("%s slice %v at offset %d: not aligned", name, a.Cpu, a.Offset)
			}
		}
		fat.Close()
		if len(cpus) != 2 || !cpus[macho.CpuArm64] || !cpus[macho.CpuAmd64] {
			t.Errorf("%s universal holds %v", name, cpus)
		}
	}
}
