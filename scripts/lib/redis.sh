# shellcheck shell=bash
# Redis: using the server on a port, or starting one (and stopping it again). Sourced by
# scripts/lib.sh.

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

# Starts Redis on 127.0.0.1:$1 unless it already answers; then stop_redis (an exit step) stops
# it when this script exits.
ensure_redis() { # port
    local port="$1"
    if redis_answers "$port"; then
        say "Redis: using the server on 127.0.0.1:$port"
        return
    fi
    port_in_use "$port" && die "something listens on 127.0.0.1:$port but does not answer Redis PING"
    command -v redis-server >/dev/null || die "Redis is not running and redis-server is not installed: apt-get install redis-server"
    REDIS_PID_FILE="$MIRAI_ROOT/.dev/redis-$port.pid"
    on_exit stop_redis
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
