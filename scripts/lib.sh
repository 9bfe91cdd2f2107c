# shellcheck shell=bash
# Shared functions of scripts/dev-up and scripts/test. Source it; don't run it.
#
# Every function prints what it does (prefix: $MIRAI_LOG_PREFIX) and fails loudly. Processes are
# only ever stopped by the PID this script recorded when it started them (or, for leftovers of
# a killed earlier run, by the PID that run recorded, after checking the command line still
# matches), never by name.

MIRAI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIRAI_LOG_PREFIX="${MIRAI_LOG_PREFIX:-mirai}"
MIRAI_DATABASES=(mirai_user mirai_stock mirai_prediction mirai_analytics mirai_notification)

say() { printf '%s: %s\n' "$MIRAI_LOG_PREFIX" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$MIRAI_LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$MIRAI_LOG_PREFIX" "$*" >&2
    exit 1
}

# bash cannot trap a signal that was already ignored when it started, and a background job of a
# non-interactive shell starts with SIGINT ignored. Re-exec the script once with SIGINT's default
# disposition so that `kill -INT` (and Ctrl-C) still runs its cleanup.
reset_ignored_sigint() { # script args...
    if [[ -n ${MIRAI_SIGINT_RESET:-} ]]; then
        unset MIRAI_SIGINT_RESET
        return 0
    fi
    local ignored
    ignored="$(awk '/^SigIgn:/ { print $2 }' "/proc/$$/status" 2>/dev/null || true)"
    [[ -n $ignored ]] && (((16#$ignored & 2) != 0)) || return 0
    env --default-signal=INT true 2>/dev/null || return 0
    export MIRAI_SIGINT_RESET=1
    exec env --default-signal=INT "$BASH" "$@"
}

# === Processes ====================================================================================

# Started processes, stopped in two groups: the applications first (newest first), then the
# infrastructure they talk to while draining (the emulator). Parallel arrays: PID, name, log.
APP_PIDS=() APP_NAMES=() APP_LOGS=()
INFRA_PIDS=() INFRA_NAMES=()
# File where the PIDs are also written, so a rerun after `kill -9` can clean up (claim_state_dir).
MIRAI_PID_FILE=""
# Set by a second Ctrl-C during shutdown: stop waiting, kill.
STOP_FORCE=0

# Starts "$@" in the background with stdout+stderr to $log; group is app or infra.
# `match` is a string of the process's command line, checked before a later run kills a leftover.
start_bg() { # group name log match command...
    local group="$1" name="$2" log="$3" match="$4"
    shift 4
    "$@" >"$log" 2>&1 &
    local pid=$!
    if [[ $group == app ]]; then
        APP_PIDS+=("$pid") APP_NAMES+=("$name") APP_LOGS+=("$log")
    else
        INFRA_PIDS+=("$pid") INFRA_NAMES+=("$name")
    fi
    [[ -z $MIRAI_PID_FILE ]] || printf '%s %s %s\n' "$pid" "$name" "$match" >>"$MIRAI_PID_FILE"
    LAST_PID=$pid
}

# Start time of process $1 (clock ticks since boot): with the PID, a unique process identity.
proc_start() { # pid
    local stat fields
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    read -ra fields <<<"${stat##*) }" # fields after "pid (comm) "; starttime is field 22
    printf '%s' "${fields[19]}"
}

# Does the process identified as "pid:starttime" still run?
proc_alive() { # pid:starttime
    [[ "$(proc_start "${1%%:*}" 2>/dev/null)" == "${1#*:}" ]]
}

# This script's identity, for owner files.
SELF_ID="$$:$(proc_start $$)"

# Is process $1 running (not gone, not a zombie waiting for a parent to reap it)?
proc_running() { # pid
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ ${stat:0:1} != Z ]]
}

# Does $1 still run a command line containing $2? (Guards against PID reuse.)
pid_runs() { # pid match
    [[ -r /proc/$1/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

# TERM the given PIDs, wait up to $timeout seconds for all of them, then KILL the rest.
stop_pids() { # timeout name=pid...
    local timeout="$1"
    shift
    (($# > 0)) || return 0
    local entry pid name deadline=$((SECONDS + timeout)) alive
    for entry in "$@"; do
        pid="${entry##*=}" name="${entry%=*}"
        if proc_running "$pid"; then
            say "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    while true; do
        alive=()
        for entry in "$@"; do proc_running "${entry##*=}" && alive+=("$entry"); done
        ((${#alive[@]} > 0)) || break
        if ((SECONDS >= deadline || STOP_FORCE)); then
            for entry in "${alive[@]}"; do
                if ((STOP_FORCE)); then
                    say "interrupted again: killing ${entry%=*} (pid ${entry##*=})"
                else
                    say "${entry%=*} (pid ${entry##*=}) did not stop within ${timeout} s; killing it"
                fi
                kill -KILL "${entry##*=}" 2>/dev/null || true
            done
            break
        fi
        sleep 0.2
    done
    # Reap our own children so no zombie is left; ignore their exit codes (a SIGTERM'd process
    # may legitimately report 143).
    for entry in "$@"; do wait "${entry##*=}" 2>/dev/null || true; done
}

# Stops every process this script started: applications, then infrastructure.
stop_started() {
    local i pairs=()
    for ((i = ${#APP_PIDS[@]} - 1; i >= 0; i--)); do pairs+=("${APP_NAMES[$i]}=${APP_PIDS[$i]}"); done
    stop_pids 30 "${pairs[@]}"
    pairs=()
    for ((i = ${#INFRA_PIDS[@]} - 1; i >= 0; i--)); do pairs+=("${INFRA_NAMES[$i]}=${INFRA_PIDS[$i]}"); done
    stop_pids 15 "${pairs[@]}"
    APP_PIDS=() APP_NAMES=() APP_LOGS=() INFRA_PIDS=() INFRA_NAMES=()
    [[ -z $MIRAI_PID_FILE ]] || rm -f "$MIRAI_PID_FILE"
}

# Claims a state directory for this run. If an earlier run that used it was killed without
# cleaning up (its owner PID is gone), stops the processes it recorded. If its owner still runs,
# fails: two runs must not share ports or logs.
claim_state_dir() { # dir what
    local dir="$1" what="$2" owner pid name match
    mkdir -p "$dir"
    if [[ -f $dir/owner ]]; then
        owner="$(cat "$dir/owner")"
        if [[ $owner != "$SELF_ID" ]] && proc_alive "$owner"; then
            die "$what is in use by pid ${owner%%:*} ($(tr '\0' ' ' <"/proc/${owner%%:*}/cmdline")); stop it first or use another MIRAI_DEV_PORT_OFFSET"
        fi
    fi
    echo "$SELF_ID" >"$dir/owner"
    if [[ -f $dir/pids ]]; then
        local leftovers=()
        while read -r pid name match; do
            [[ -n $pid ]] && pid_runs "$pid" "$match" && leftovers+=("$name=$pid")
        done <"$dir/pids"
        if ((${#leftovers[@]} > 0)); then
            say "an earlier run with this state dir was killed; stopping the ${#leftovers[@]} processes it left"
            stop_pids 30 "${leftovers[@]}"
        fi
        rm -f "$dir/pids"
    fi
    MIRAI_PID_FILE="$dir/pids"
}

release_state_dir() { # dir
    [[ ! -f $1/owner || $(cat "$1/owner") != "$SELF_ID" ]] || rm -f "$1/owner"
}

# Is something listening on 127.0.0.1:$1?
port_in_use() {
    (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A free TCP port on 127.0.0.1 in [$1, $2] (random probe; fine for a test run).
free_port() { # lo hi
    local lo="$1" hi="$2" port _
    for _ in $(seq 1 200); do
        port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
        port_in_use "$port" || {
            printf '%s' "$port"
            return
        }
    done
    die "no free port found in $lo..$hi"
}

# === PostgreSQL ===================================================================================

# The server every database lives on, without a database name: postgres://user:pw@host:port
PG_SERVER_URL=""
# Query part of the URL the server came from (e.g. ?sslmode=disable), kept on every database URL.
PG_URL_QUERY=""
# Set when this script uses the private cluster (see start_private_postgres).
PRIVATE_PG_DIR="" PRIVATE_PG_CTL=()

# Splits a PostgreSQL URL into PG_SERVER_URL (scheme://user:pw@host:port) and PG_URL_QUERY.
pg_set_server_from_url() { # url
    local url="$1" query="" rest scheme
    if [[ $url == *\?* ]]; then
        query="?${url#*\?}"
        url="${url%%\?*}"
    fi
    [[ $url == postgres://* || $url == postgresql://* ]] || die "not a postgres:// URL: ${url%%@*}@..."
    scheme="${url%%://*}"
    rest="${url#*://}"
    PG_SERVER_URL="$scheme://${rest%%/*}"
    PG_URL_QUERY="$query"
}

# URL of database $1 on the chosen server.
pg_url() { printf '%s/%s%s' "$PG_SERVER_URL" "$1" "$PG_URL_QUERY"; }

# The server URL with any password masked, for log lines.
pg_display() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$PG_SERVER_URL"; }

pg_psql() { # database, psql args...
    local db="$1"
    shift
    PGCONNECT_TIMEOUT=5 psql -X -v ON_ERROR_STOP=1 -Atq "$(pg_url "$db")" "$@"
}

# Can we log in to the current PG_SERVER_URL?
pg_login_works() { pg_psql postgres -c 'SELECT 1' >/dev/null 2>&1; }

# Sets PG_SERVER_URL to a server we can log in to, in this order:
#   1. DATABASE_URL's server (its database name is dropped, everything else kept);
#   2. 127.0.0.1:5432 as postgres (the Debian cluster; started if installed but stopped);
#   3. a private cluster under .dev/pg created with the system's initdb, stopped by
#      stop_private_postgres when this script exits.
ensure_postgres() {
    command -v psql >/dev/null || die "psql not found: install PostgreSQL (apt-get install postgresql)"
    if [[ -n ${DATABASE_URL:-} ]]; then
        pg_set_server_from_url "$DATABASE_URL"
        pg_login_works || die "DATABASE_URL's server $(pg_display) does not answer or refuses the login: $(pg_psql postgres -c 'SELECT 1' 2>&1 | head -3)"
        say "PostgreSQL: using DATABASE_URL's server $(pg_display)"
        return
    fi
    PG_SERVER_URL="postgres://postgres@127.0.0.1:5432" PG_URL_QUERY=""
    if pg_login_works; then
        say "PostgreSQL: using the server on 127.0.0.1:5432"
        return
    fi
    if port_in_use 5432; then
        warn "a server listens on 127.0.0.1:5432 but postgres@ cannot log in without a password ($(pg_psql postgres -c 'SELECT 1' 2>&1 | head -1)); set DATABASE_URL to use it"
    elif start_debian_cluster; then
        return
    fi
    start_private_postgres
}

# Starts the stopped Debian cluster (newest version, cluster `main`) and uses it if postgres@
# can log in over TCP. It is the system's server, so it is left running on exit.
start_debian_cluster() {
    command -v pg_lsclusters >/dev/null && command -v pg_ctlcluster >/dev/null || return 1
    local ver name port status chosen=""
    while read -r ver name port status _; do
        [[ $name == main ]] && chosen="$ver $port $status"
    done < <(pg_lsclusters -h 2>/dev/null)
    [[ -n $chosen ]] || return 1
    read -r ver port status <<<"$chosen"
    PG_SERVER_URL="postgres://postgres@127.0.0.1:$port" PG_URL_QUERY=""
    local deadline=$((SECONDS + 30))
    if [[ $status == online* ]]; then
        # Running, yet not reachable as postgres@127.0.0.1 (other port, pg_hba, network).
        pg_login_works && { say "PostgreSQL: using the system cluster $ver/main on 127.0.0.1:$port"; return 0; }
        warn "the system cluster $ver/main runs but postgres@127.0.0.1:$port cannot log in; falling back to a private cluster"
        return 1
    fi
    say "PostgreSQL: starting the system cluster $ver/main (port $port)"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
        {
            warn "could not start the system cluster $ver/main; falling back to a private cluster"
            return 1
        }
    until pg_login_works; do
        if ((SECONDS >= deadline)); then
            warn "the system cluster $ver/main runs but postgres@127.0.0.1:$port cannot log in ($(pg_psql postgres -c 'SELECT 1' 2>&1 | head -1)); falling back to a private cluster"
            return 1
        fi
        sleep 0.2
    done
    say "PostgreSQL: using the system cluster $ver/main on 127.0.0.1:$port"
}

# Path of the server program $1 (initdb, pg_ctl, pg_basebackup, ...) of the newest PostgreSQL
# installed (Debian keeps them in /usr/lib/postgresql/<version>/bin, off the PATH); fails if none.
pg_server_bin() { # program
    local path
    path="$(find /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -1 || true)"
    [[ -n $path ]] || path="$(command -v "$1" || true)"
    [[ -n $path && -x $path ]] || return 1
    printf '%s' "$path"
}

# A private cluster with trust auth under .dev/pg (port $MIRAI_PRIVATE_PG_PORT, default 55432).
# initdb refuses to run as root, so as root the cluster belongs to the postgres user. Several
# runs may share it (dev-up beside scripts/test): each registers in users/, and the last one
# to leave stops it.
start_private_postgres() {
    local initdb bindir dir port="${MIRAI_PRIVATE_PG_PORT:-55432}" run=()
    initdb="$(pg_server_bin initdb)" ||
        die "no PostgreSQL server to use and no initdb to create one: apt-get install postgresql, or set DATABASE_URL"
    bindir="$(dirname "$initdb")"
    dir="$MIRAI_ROOT/.dev/pg"
    mkdir -p "$dir/users"
    if [[ $EUID -eq 0 ]]; then
        if ! id postgres >/dev/null 2>&1; then
            say "PostgreSQL: creating the system user postgres to own the private cluster"
            useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        fi
        run=(runuser -u postgres --)
        chown postgres "$dir"
        if ! "${run[@]}" test -w "$dir" -a -x "$dir"; then
            # The repository sits where postgres cannot go (e.g. under /root): keep the cluster
            # outside it, one per checkout.
            dir="/var/tmp/mirai-pg-$(printf '%s' "$MIRAI_ROOT" | cksum | cut -d' ' -f1)"
            say "PostgreSQL: the postgres user cannot reach $MIRAI_ROOT/.dev/pg; using $dir"
            mkdir -p "$dir/users"
            chown postgres "$dir"
        fi
    fi
    local data="$dir/data" sockdir="$dir"
    # Unix socket paths are limited to 107 bytes.
    ((${#sockdir} < 80)) || sockdir=/tmp
    if [[ ! -f $data/PG_VERSION ]]; then
        say "PostgreSQL: creating a private cluster in $data ($initdb)"
        "${run[@]}" "$initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
            {
                tail -20 "$dir/initdb.log" >&2
                die "initdb failed (log: $dir/initdb.log)"
            }
    fi
    PRIVATE_PG_CTL=("${run[@]}" "$bindir/pg_ctl" -D "$data")
    if "${PRIVATE_PG_CTL[@]}" status >/dev/null 2>&1; then
        port="$(sed -n 4p "$data/postmaster.pid")"
        say "PostgreSQL: the private cluster already runs on 127.0.0.1:$port; using it"
    else
        port_in_use "$port" && die "port $port (private PostgreSQL) is taken by something else; set MIRAI_PRIVATE_PG_PORT"
        say "PostgreSQL: starting the private cluster on 127.0.0.1:$port"
        "${PRIVATE_PG_CTL[@]}" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -k $sockdir -c listen_addresses=127.0.0.1" start >/dev/null ||
            {
                tail -20 "$dir/server.log" >&2
                die "the private PostgreSQL cluster did not start (log: $dir/server.log)"
            }
    fi
    echo "$SELF_ID" >"$dir/users/$$"
    PRIVATE_PG_DIR="$dir"
    PG_SERVER_URL="postgres://postgres@127.0.0.1:$port" PG_URL_QUERY=""
    pg_login_works || die "the private cluster on 127.0.0.1:$port does not accept postgres@"
}

# Stops the private cluster if this script uses it and no other live run does.
stop_private_postgres() {
    [[ -n $PRIVATE_PG_DIR ]] || return 0
    local dir="$PRIVATE_PG_DIR" user others=()
    PRIVATE_PG_DIR=""
    rm -f "$dir/users/$$"
    for user in "$dir"/users/*; do
        [[ -e $user ]] || continue
        if proc_alive "$(cat "$user")"; then
            others+=("${user##*/}")
        else
            rm -f "$user"
        fi
    done
    if ((${#others[@]} > 0)); then
        say "PostgreSQL: leaving the private cluster running for pid ${others[*]}"
        return 0
    fi
    say "PostgreSQL: stopping the private cluster"
    "${PRIVATE_PG_CTL[@]}" -m fast -w -t 60 stop >/dev/null 2>&1 || warn "pg_ctl stop failed (see $dir/server.log)"
}

# Creates each of the five service databases that does not exist yet.
create_databases() {
    local db
    for db in "${MIRAI_DATABASES[@]}"; do
        if [[ "$(pg_psql postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" == 1 ]]; then
            continue
        fi
        say "PostgreSQL: creating database $db"
        # A concurrent run may have created it meanwhile: check again before failing.
        pg_psql postgres -c "CREATE DATABASE \"$db\"" >/dev/null 2>&1 ||
            [[ "$(pg_psql postgres -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" == 1 ]] ||
            die "could not create database $db on $(pg_display): $(pg_psql postgres -c "CREATE DATABASE \"$db\"" 2>&1 | head -2)"
    done
}

# === Redis ========================================================================================

REDIS_PID_FILE=""

# Does Redis answer PING on 127.0.0.1:$1? (bash /dev/tcp; redis-cli may be absent.)
redis_answers() { # port
    local reply="" fd
    # The braces matter: `exec ... 2>/dev/null` alone would silence stderr for good.
    { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&"$fd"
    read -r -t 2 reply <&"$fd" || true
    exec {fd}>&-
    [[ $reply == +PONG* ]]
}

# Starts Redis on 127.0.0.1:$1 unless it already answers; stop_redis stops it if started here.
ensure_redis() { # port
    local port="$1"
    if redis_answers "$port"; then
        say "Redis: using the server on 127.0.0.1:$port"
        return
    fi
    port_in_use "$port" && die "something listens on 127.0.0.1:$port but does not answer Redis PING"
    command -v redis-server >/dev/null || die "Redis is not running and redis-server is not installed: apt-get install redis-server"
    REDIS_PID_FILE="$MIRAI_ROOT/.dev/redis-$port.pid"
    mkdir -p "$MIRAI_ROOT/.dev"
    say "Redis: starting on 127.0.0.1:$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
        --pidfile "$REDIS_PID_FILE" --logfile "$MIRAI_ROOT/.dev/redis-$port.log" >/dev/null
    local deadline=$((SECONDS + 15))
    until redis_answers "$port"; do
        ((SECONDS < deadline)) || die "Redis did not answer within 15 s (log: .dev/redis-$port.log)"
        sleep 0.1
    done
}

stop_redis() {
    [[ -n $REDIS_PID_FILE && -f $REDIS_PID_FILE ]] || return 0
    local pid
    pid="$(cat "$REDIS_PID_FILE")"
    REDIS_PID_FILE=""
    pid_runs "$pid" redis-server && stop_pids 10 "redis-server=$pid"
}

# === Pub/Sub emulator =============================================================================

emulator_launcher() {
    local launcher
    launcher="$(dpkg -L google-cloud-cli-pubsub-emulator 2>/dev/null | grep 'bin/cloud-pubsub-emulator$' | head -1 || true)"
    [[ -n $launcher && -x $launcher ]] ||
        die "the Pub/Sub emulator is not installed: apt-get install google-cloud-cli-pubsub-emulator (Google's apt repository; needs Java 17), or set PUBSUB_EMULATOR_HOST"
    printf '%s' "$launcher"
}

# Starts the official emulator on 127.0.0.1:$1 (log in $2/emulator.log), waits until it
# answers `Ok` and exports PUBSUB_EMULATOR_HOST. The launcher execs java, so the PID we record
# is the emulator's own.
start_emulator() { # port dir
    local port="$1" dir="$2" launcher pid deadline
    launcher="$(emulator_launcher)"
    port_in_use "$port" && die "port $port (Pub/Sub emulator) is in use; set PUBSUB_EMULATOR_HOST to use that emulator, or MIRAI_DEV_PORT_OFFSET"
    mkdir -p "$dir"
    say "Pub/Sub emulator: starting on 127.0.0.1:$port (log: ${dir#"$MIRAI_ROOT"/}/emulator.log)"
    # The emulator keeps no state on disk; its working directory only holds the log.
    # shellcheck disable=SC2016 # $1..$3 are bash -c positional arguments
    start_bg infra pubsub-emulator "$dir/emulator.log" pubsub-emulator \
        bash -c 'cd "$1" && exec "$2" --host=127.0.0.1 --port="$3"' _ "$dir" "$launcher" "$port"
    pid=$LAST_PID
    deadline=$((SECONDS + ${MIRAI_EMULATOR_TIMEOUT:-60}))
    until [[ "$(curl -s --max-time 2 "http://127.0.0.1:$port/" 2>/dev/null)" == Ok* ]]; do
        if ! proc_running "$pid"; then
            tail -20 "$dir/emulator.log" >&2
            die "the Pub/Sub emulator exited during startup (log: $dir/emulator.log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -20 "$dir/emulator.log" >&2
            die "the Pub/Sub emulator did not answer Ok on 127.0.0.1:$port within ${MIRAI_EMULATOR_TIMEOUT:-60} s (log: $dir/emulator.log)"
        fi
        sleep 0.2
    done
    export PUBSUB_EMULATOR_HOST="127.0.0.1:$port"
    say "Pub/Sub emulator: ready on $PUBSUB_EMULATOR_HOST (pid $pid)"
}

# === Internal identity keys ===
# Every process signs its gRPC calls with its own Ed25519 key and trusts the public keys listed
# in one JSON file (services/platform/src/grpc/identity.rs). Makes, in <dir>, <name>.pem for each
# process (kept when present, so a restarted stack keeps its keys) and trusted-keys.json binding
# each public key to its process; prints nothing. Use with identity_env.
IDENTITY_PROCESSES=(gateway user stock-data prediction analytics notification)
make_identity_keys() { # dir
    local dir="$1" name x entries=()
    command -v openssl >/dev/null || die "openssl not found (it makes the internal identity keys): apt-get install openssl"
    mkdir -p "$dir"
    chmod 700 "$dir"
    for name in "${IDENTITY_PROCESSES[@]}"; do
        if [[ ! -s $dir/$name.pem ]]; then
            (umask 077 && openssl genpkey -algorithm ed25519 -out "$dir/$name.pem.partial") ||
                die "openssl could not make an Ed25519 key"
            mv "$dir/$name.pem.partial" "$dir/$name.pem"
        fi
        # The raw public key is the last 32 bytes of the DER SubjectPublicKeyInfo; JWK x is its
        # base64url without padding.
        x="$(openssl pkey -in "$dir/$name.pem" -pubout -outform DER | tail -c 32 | base64 | tr '+/' '-_' | tr -d '=\n')"
        entries+=("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"iss\":\"mirai-$name\",\"x\":\"$x\"}")
    done
    local IFS=,
    printf '{"keys":[%s]}\n' "${entries[*]}" >"$dir/trusted-keys.json.partial"
    mv "$dir/trusted-keys.json.partial" "$dir/trusted-keys.json"
}

# The two variables that give process <name> (gateway, user, ...) its key and the trust set
# made by make_identity_keys in <dir>, as NAME=value words for env.
identity_env() { # dir name
    printf '%s\n' "MIRAI_INTERNAL_SIGNING_KEY=$1/$2.pem" "MIRAI_INTERNAL_TRUSTED_KEYS=$1/trusted-keys.json"
}
