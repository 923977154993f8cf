package main

import (
	"debug/macho"
	"debug/pe"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildSidecar runs scripts/build-sidecar for five targets: the Linux
// binary runs and reports the stamped version, the macOS universal binary
// holds both architectures, and the Windows ones are PE executables of
// their architecture carrying the version, under their release names.
func TestBuildSidecar(t *testing.T) {
	dist := t.TempDir()
	cmd := exec.Command("../build-sidecar")
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION=v9.8.7-test", "TARGETS=linux/amd64 darwin/arm64 darwin/amd64 windows/amd64 windows/arm64")
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
		for arch, machine := range map[string]uint16{"amd64": pe.IMAGE_FILE_MACHINE_AMD64, "arm64": pe.IMAGE_FILE_MACHINE_ARM64} {
			exe := filepath.Join(dist, name+"-windows-"+arch+".exe")
			f, err := pe.Open(exe)
			if err != nil {
				t.Errorf("%s: %v", exe, err)
				continue
			}
			if f.Machine != machine {
				t.Errorf("%s: machine %#x, want %#x", exe, f.Machine, machine)
			}
			f.Close()
			if data, err := os.ReadFile(exe); err != nil || !strings.Contains(string(data), "v9.8.7-test") {
				t.Errorf("%s does not carry the stamped version (%v)", exe, err)
			}
		}
		for _, release := range []string{name + "-linux-amd64", name + "-darwin-universal"} {
			if _, err := os.Stat(filepath.Join(dist, release)); err != nil {
				t.Errorf("release name: %v", err)
			}
		}
	}
}
