# shellcheck shell=bash
# PostgreSQL: choosing the server (DATABASE_URL, 127.0.0.1:5432, the Debian cluster or a
# private one under .dev/pg), database URLs, psql, and the five service databases. Sourced by
# scripts/lib.sh.

MIRAI_DATABASES=(mirai_user mirai_stock mirai_prediction mirai_analytics mirai_notification)

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
#      stop_private_postgres (an exit step) when this script exits.
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
    on_exit stop_private_postgres
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
