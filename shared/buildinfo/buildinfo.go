// Package buildinfo reports the build version of the SAS binaries.
package buildinfo

import "runtime/debug"

// Version is stamped at build time:
//
//	go build -ldflags "-X github.com/signals-sorcery/sas/shared/buildinfo.Version=v1.2.3"
//
// When unset it falls back to the module version or VCS revision that the
// Go toolchain recorded, else "dev".
var Version = ""

// String returns the build version.
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}
