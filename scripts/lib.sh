# Shared functions of scripts/dev-up and scripts/test. Source it; don't run it.
# Every function prints what it does (prefix: $MIRAI_LOG_PREFIX) and fails loudly.

MIRAI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIRAI_LOG_PREFIX="${MIRAI_LOG_PREFIX:-mirai}"
MIRAI_DATABASES=(mirai_user mirai_stock mirai_prediction mirai_analytics mirai_notification)

say() { printf '%s: %s\n' "$MIRAI_LOG_PREFIX" "$*"; }
die() { printf '%s: ERROR: %s\n' "$MIRAI_LOG_PREFIX" "$*" >&2; exit 1; }

# PIDs this script started, stopped in reverse order by stop_started.
STARTED_PIDS=()
PRIVATE_PG_DIR=""

# --- PostgreSQL -------------------------------------------------------------------------------

# Strips the database name (and query) from a postgres URL: postgres://u:p@h:5432/db -> postgres://u:p@h:5432
pg_server_url() {
    local url="${1%%\?*}"
    local rest="${url#*://}"
    local scheme="${url%%://*}"
    printf '%s://%s' "$scheme" "${rest%%/*}"
}

pg_answers() { # url
    psql "$1/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1
}

# Sets PG_SERVER_URL to a reachable server: DATABASE_URL's, else 127.0.0.1:5432 (starting the
# Debian cluster if it is installed but stopped), else a private cluster under .dev/pg.
ensure_postgres() {
    command -v psql >/dev/null || die "psql not found: install PostgreSQL (apt-get install postgresql)"
    if [[ -n "${DATABASE_URL:-}" ]]; then
        PG_SERVER_URL="$(pg_server_url "$DATABASE_URL")"
        pg_answers "$PG_SERVER_URL" || die "DATABASE_URL server does not answer: $PG_SERVER_URL"
        say "PostgreSQL: using DATABASE_URL's server"
        return
    fi
    PG_SERVER_URL="postgres://postgres@127.0.0.1:5432"
    if pg_answers "$PG_SERVER_URL"; then
        say "PostgreSQL: using the server on 127.0.0.1:5432"
        return
    fi
    if [[ -d /etc/postgresql ]] && command -v pg_ctlcluster >/dev/null; then
        local version
        version="$(ls /etc/postgresql | sort -V | tail -1)"
        if [[ -n "$version" ]]; then
            say "PostgreSQL: starting the system cluster $version/main"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
            for _ in $(seq 1 50); do pg_answers "$PG_SERVER_URL" && return; sleep 0.2; done
        fi
    fi
    start_private_postgres
}

start_private_postgres() {
    local initdb
    initdb="$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)"
    [[ -x "$initdb" ]] || die "no PostgreSQL server reachable and no initdb found: apt-get install postgresql"
    local bindir port=55432
    bindir="$(dirname "$initdb")"
    PRIVATE_PG_DIR="$MIRAI_ROOT/.dev/pg"
    mkdir -p "$PRIVATE_PG_DIR"
    # initdb refuses to run as root: the cluster belongs to the postgres user when we are root.
    local run=()
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown -R postgres "$PRIVATE_PG_DIR"
        run=(runuser -u postgres --)
    fi
    if [[ ! -f "$PRIVATE_PG_DIR/data/PG_VERSION" ]]; then
        say "PostgreSQL: creating a private cluster in $PRIVATE_PG_DIR/data"
        "${run[@]}" "$initdb" -D "$PRIVATE_PG_DIR/data" -U postgres --auth=trust >/dev/null
    fi
    say "PostgreSQL: starting the private cluster on 127.0.0.1:$port"
    "${run[@]}" "$bindir/pg_ctl" -D "$PRIVATE_PG_DIR/data" -l "$PRIVATE_PG_DIR/server.log" -w \
        -o "-p $port -k $PRIVATE_PG_DIR -c listen_addresses=127.0.0.1" start >/dev/null
    PG_SERVER_URL="postgres://postgres@127.0.0.1:$port"
    PRIVATE_PG_CTL=("${run[@]}" "$bindir/pg_ctl" -D "$PRIVATE_PG_DIR/data")
}

stop_private_postgres() {
    if [[ -n "$PRIVATE_PG_DIR" ]]; then
        say "PostgreSQL: stopping the private cluster"
        "${PRIVATE_PG_CTL[@]}" -m fast stop >/dev/null 2>&1 || true
        PRIVATE_PG_DIR=""
    fi
}

create_databases() {
    local db
    for db in "${MIRAI_DATABASES[@]}"; do
        if [[ "$(psql "$PG_SERVER_URL/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
            say "PostgreSQL: creating database $db"
            psql "$PG_SERVER_URL/postgres" -qc "CREATE DATABASE $db" >/dev/null
        fi
    done
}

# --- Pub/Sub emulator -------------------------------------------------------------------------

emulator_launcher() {
    local launcher
    launcher="$(dpkg -L google-cloud-cli-pubsub-emulator 2>/dev/null | grep 'bin/cloud-pubsub-emulator$' | head -1 || true)"
    [[ -n "$launcher" && -x "$launcher" ]] || die "Pub/Sub emulator not installed: apt-get install google-cloud-cli-pubsub-emulator (needs Java 17)"
    printf '%s' "$launcher"
}

# Starts the official emulator on 127.0.0.1:$1 with data in $2; exports PUBSUB_EMULATOR_HOST.
# The launcher execs java, so its PID is the emulator's.
start_emulator() {
    local port="$1" data_dir="$2" launcher
    launcher="$(emulator_launcher)"
    mkdir -p "$data_dir"
    say "Pub/Sub emulator: starting on 127.0.0.1:$port"
    "$launcher" --host=127.0.0.1 --port="$port" --data-dir="$data_dir" >"$data_dir/emulator.log" 2>&1 &
    EMULATOR_PID=$!
    STARTED_PIDS+=("$EMULATOR_PID")
    for _ in $(seq 1 300); do
        if [[ "$(curl -s "http://127.0.0.1:$port/" 2>/dev/null)" == Ok* ]]; then
            export PUBSUB_EMULATOR_HOST="127.0.0.1:$port"
            say "Pub/Sub emulator: ready (pid $EMULATOR_PID)"
            return
        fi
        kill -0 "$EMULATOR_PID" 2>/dev/null || { tail -20 "$data_dir/emulator.log" >&2; die "the emulator exited"; }
        sleep 0.1
    done
    tail -20 "$data_dir/emulator.log" >&2
    die "the emulator did not answer within 30 s"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- processes --------------------------------------------------------------------------------

# Stops every started PID (newest first): TERM, up to 30 s, then KILL.
stop_started() {
    local i pid
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid="${STARTED_PIDS[$i]}"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid="${STARTED_PIDS[$i]}"
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not stop within 30 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}
