# shellcheck shell=bash
# Wine for running the sidecar's and sas-login's GOOS=windows test binaries
# on Linux (scripts/test-windows, scripts/test). Source it after
# services.sh, call ensure_wine, then go_test_windows <pkgs…>. The prefix
# lives in a temp dir registered with services.sh's cleanup, and its
# wineserver is stopped by PID like the other services.

SAS_WINE_LOADER=/usr/lib/wine/wine64      # Debian 12 keeps the 64-bit loader off PATH
SAS_WINESERVER=/usr/lib/wine/wineserver64

# ensure_wine installs Wine 8 and MinGW if missing, builds the
# bcryptprimitives.dll that Go ≥ 1.24 binaries need (scripts/wine/
# bcryptprimitives.c: Wine 8 has no ProcessPrng), makes a fresh prefix
# (wineboot, ~15 s) and keeps one wineserver running for it, so each test
# binary starts in a fraction of a second.
ensure_wine() {
  local want=() dir
  [ -x "$SAS_WINE_LOADER" ] || want+=(wine64)
  command -v x86_64-w64-mingw32-gcc >/dev/null || want+=(gcc-mingw-w64-x86-64)
  if [ ${#want[@]} -gt 0 ]; then apt_install "${want[@]}"; fi
  new_dir wine; dir=$NEW_DIR; chown "$(id -u):$(id -g)" "$dir"
  x86_64-w64-mingw32-gcc -shared -O2 -s -o "$dir/bcryptprimitives.dll" scripts/wine/bcryptprimitives.c \
    || die "building bcryptprimitives.dll failed"
  export WINEPREFIX="$dir/prefix" WINEDEBUG=-all SAS_WINE_LOADER
  # No Mono/Gecko installers (they would want the network), no menu
  # entries, and no winebrowser: a sidecar test opening a sign-in URL must
  # not reach the host's xdg-open.
  export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe,winebrowser.exe=d"
  mkdir -p "$WINEPREFIX"
  "$SAS_WINESERVER" --foreground --persistent >"$dir/wineserver.log" 2>&1 &
  SAS_SVC_PIDS+=($!)
  # wineboot complains about the 32-bit rundll32 of a 64-bit-only Wine: harmless.
  "$SAS_WINE_LOADER" wineboot --init >"$dir/wineboot.log" 2>&1 \
    || { cat "$dir/wineboot.log" >&2; die "wineboot failed"; }
  [ -d "$WINEPREFIX/drive_c/windows/system32" ] || { cat "$dir/wineboot.log" >&2; die "wineboot made no prefix"; }
  cp "$dir/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
  log "Wine $("$SAS_WINE_LOADER" --version | sed 's/^wine-//') prefix in $WINEPREFIX (wineserver pid ${SAS_SVC_PIDS[-1]})"
}

# go_test_windows [go test flags…] <pkgs…> builds pkgs' tests for
# windows/amd64 and runs them under Wine (scripts/wine/exec). The binaries
# the end-to-end tests start (sidecar/internal/e2etest) are built for
# Windows beforehand: under Wine there is no Go toolchain to build them.
go_test_windows() {
  local bin
  new_dir winbin; bin=$NEW_DIR; chown "$(id -u):$(id -g)" "$bin"
  log "go build (windows/amd64) sas-gateway sas-login sas-sidecar"
  CGO_ENABLED=0 GOOS=windows GOARCH=amd64 \
    go build -o "$bin/" ./gateway/cmd/sas-gateway ./sidecar/cmd/sas-login ./sidecar/cmd/sas-sidecar
  log "go test (windows/amd64, under Wine) $*"
  CGO_ENABLED=0 GOOS=windows GOARCH=amd64 SAS_E2E_BIN_DIR="Z:$bin" \
    go test -count=1 -timeout 5m -exec "$PWD/scripts/wine/exec" "$@"
}
