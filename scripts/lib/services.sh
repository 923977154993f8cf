# shellcheck shell=bash
# Throwaway PostgreSQL, PgBouncer and Redis servers on 127.0.0.1 with random
# ports and temp dirs, for scripts/test and scripts/bench. Source this file,
# call start_services, and stop_services runs on exit (also on failure).
# Everything is stopped by the PID we started, never by name.

set -euo pipefail

export PATH="$PATH:/usr/local/go/bin:/usr/lib/postgresql/15/bin"
SAS_SVC_PIDS=()
SAS_SVC_DIRS=()

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_updated=""
apt_install() {
  [ "$(id -u)" = 0 ] || die "missing packages ($*): install them, or run as root so this script can"
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install -y $*"
  # Packages must not start their own daemons (Debian's postgresql would
  # create and start a cluster on :5432): we start ours, on random ports.
  local policy=/usr/sbin/policy-rc.d own_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  mkdir -p /etc/postgresql-common
  [ -e /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
  # Removed whatever happened: a leftover policy would stop every later
  # package on this machine from starting its service.
  if [ -n "$own_policy" ]; then rm -f "$policy"; fi
  [ "$rc" = 0 ] || die "apt-get install $* failed (exit $rc)"
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null && dirname "$(command -v initdb)"
}

# ensure_packages installs what is missing: PostgreSQL (server binaries),
# Redis, PgBouncer, Prometheus and the rest the tests drive.
ensure_packages() {
  local want=()
  [ -n "$(pg_bin)" ] || want+=(postgresql)
  command -v redis-server >/dev/null || want+=(redis-server)
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || want+=(pgbouncer)
  # go test -race needs cgo, hence a C compiler and libc headers.
  command -v gcc >/dev/null || want+=(gcc libc6-dev)
  # A real Secret Service for the keyring tests.
  command -v dbus-run-session >/dev/null || want+=(dbus-daemon)
  command -v dbus-send >/dev/null || want+=(dbus-bin)
  command -v gnome-keyring-daemon >/dev/null || want+=(gnome-keyring)
  # The official openai npm package is tested against the gateway.
  command -v node >/dev/null || want+=(nodejs)
  command -v npm >/dev/null || want+=(npm)
  # The real-browser sign-in test drives Debian's Chromium (chromedp).
  command -v chromium >/dev/null || want+=(chromium)
  # A real Prometheus scrapes the gateway and evaluates the alert rules;
  # promtool unit-tests them (both from Debian's prometheus package).
  { command -v prometheus >/dev/null && command -v promtool >/dev/null; } || want+=(prometheus)
  if [ ${#want[@]} -gt 0 ]; then apt_install "${want[@]}"; fi
  PG_BIN=$(pg_bin)
  [ -n "$PG_BIN" ] || die "PostgreSQL server binaries not found after install"
  PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
}

# free_port prints a TCP port nobody listens on right now, below Linux's
# ephemeral range (32768+) so the tests' own 127.0.0.1:0 listeners and
# outgoing connections cannot take it between this check and the bind.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( RANDOM % 12000 + 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

wait_port() { # name port pid logfile — fails (after printing the log) if the server died
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    if ! kill -0 "$3" 2>/dev/null; then
      log "$1 exited during startup on port $2:"
      [ -n "${4:-}" ] && tail -n 20 "$4" >&2
      return 1
    fi
    sleep 0.1
  done
  die "$1 did not listen on 127.0.0.1:$2 within 15 s"
}

# retry runs a start function up to 3 times: a random port can still be
# taken by someone else between free_port and the server's bind.
retry() {
  local i
  for i in 1 2 3; do
    "$@" && return 0
    log "retrying $1 on another port ($i/3)"
  done
  die "$1 failed 3 times"
}

# as_service_user runs a command as the postgres OS user when we are root
# (initdb, postgres and pgbouncer refuse to run as root). It execs, with
# setpriv rather than runuser/su (which stay as a parent process), so that
# `as_service_user server &` leaves the server's own PID in $!.
as_service_user() {
  if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    exec "$@"
  fi
}

# new_dir makes a temp dir owned by the service user and sets NEW_DIR (not
# printed: a $(…) subshell would lose its registration for cleanup).
new_dir() {
  NEW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sas-$1.XXXXXX")
  SAS_SVC_DIRS+=("$NEW_DIR")
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chown postgres: "$NEW_DIR"
  fi
}

start_postgres() {
  local dir port
  new_dir pg; dir=$NEW_DIR; port=$(free_port)
  (as_service_user "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync) >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  as_service_user "$PG_BIN/postgres" -D "$dir/data" -h 127.0.0.1 -p "$port" -k "$dir" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
    >"$dir/postgres.log" 2>&1 &
  SAS_SVC_PIDS+=($!)
  wait_port postgres "$port" $! "$dir/postgres.log" || return 1
  for _ in $(seq 1 100); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  PG_PORT=$port
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $!)"
}

start_pgbouncer() {
  local dir port
  new_dir pgbouncer; dir=$NEW_DIR; port=$(free_port)
  printf '"postgres" ""\n' >"$dir/users.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 10
ignore_startup_parameters = extra_float_digits,options
pidfile =
logfile =
INI
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"/*
  as_service_user "$PGBOUNCER" -q "$dir/pgbouncer.ini" >"$dir/pgbouncer.log" 2>&1 &
  SAS_SVC_PIDS+=($!)
  wait_port pgbouncer "$port" $! "$dir/pgbouncer.log" || return 1
  export TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  log "PgBouncer (transaction mode) on 127.0.0.1:$port (pid $!)"
}

start_redis() {
  local dir port
  new_dir redis; dir=$NEW_DIR; port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
    --daemonize no --logfile "$dir/redis.log" &
  SAS_SVC_PIDS+=($!)
  wait_port redis "$port" $! "$dir/redis.log" || return 1
  export TEST_REDIS_URL="redis://127.0.0.1:$port/0"
  log "Redis $(redis-server --version | awk '{print $3}' | sed 's/^v=//') on 127.0.0.1:$port (pid $!)"
}

# start_keyring starts gnome-keyring's Secret Service on the session bus
# (the caller runs under dbus-run-session), with a fresh, unlocked keyring
# in a temp dir. go-keyring's MockInit is for unit tests only: the keyring
# store is tested against the real thing.
start_keyring() {
  [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ] || die "start_keyring needs a D-Bus session (dbus-run-session)"
  local dir
  new_dir keyring; dir=$NEW_DIR
  chown "$(id -u):$(id -g)" "$dir"
  export XDG_DATA_HOME="$dir"
  printf 'sas-test\n' | gnome-keyring-daemon --foreground --unlock --components=secrets >"$dir/keyring.log" 2>&1 &
  SAS_SVC_PIDS+=($!)
  for _ in $(seq 1 100); do
    if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'; then
      export TEST_SECRET_SERVICE=1
      log "Secret Service (gnome-keyring, unlocked, in $dir) (pid $!)"
      return
    fi
    sleep 0.1
  done
  cat "$dir/keyring.log" >&2
  die "gnome-keyring's Secret Service did not appear on the session bus"
}

# install_sdk_deps installs the npm packages the SDK tests run (openai 6.x,
# pinned by its package-lock.json).
install_sdk_deps() {
  local dir=gateway/llmproxy/testdata/sdk
  if [ ! -f "$dir/node_modules/openai/package.json" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  fi
}

# start_stripe_mock starts stripe-mock (Stripe's API mock, a Go module,
# built into a temp dir) on 127.0.0.1 for the billing tests.
STRIPE_MOCK_VERSION=v0.203.0
start_stripe_mock() {
  local dir port
  new_dir stripe; dir=$NEW_DIR; chown "$(id -u):$(id -g)" "$dir"; port=$(free_port)
  GOBIN="$dir" go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION" || die "go install stripe-mock failed"
  # Both listeners on loopback: left alone, HTTPS would bind :12112 on every
  # interface.
  "$dir/stripe-mock" -http-addr "127.0.0.1:$port" -https-addr "127.0.0.1:$(free_port)" >"$dir/stripe-mock.log" 2>&1 &
  SAS_SVC_PIDS+=($!)
  wait_port stripe-mock "$port" $! "$dir/stripe-mock.log" || return 1
  export TEST_STRIPE_MOCK_URL="http://127.0.0.1:$port"
  log "stripe-mock $STRIPE_MOCK_VERSION on 127.0.0.1:$port (pid $!)"
}

stop_services() {
  local pid
  for pid in "${SAS_SVC_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${SAS_SVC_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ ${#SAS_SVC_DIRS[@]} -gt 0 ]; then rm -rf "${SAS_SVC_DIRS[@]}"; fi
}

start_services() {
  ensure_packages
  trap stop_services EXIT
  trap 'exit 130' INT TERM
  retry start_postgres
  retry start_pgbouncer
  retry start_redis
}
