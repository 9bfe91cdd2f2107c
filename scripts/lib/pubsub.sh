# shellcheck shell=bash
# The Pub/Sub emulator: finding the installed one and starting it on a port. Sourced by
# scripts/lib.sh.

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
