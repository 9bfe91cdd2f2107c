# shellcheck shell=bash
# Processes: starting them in the background with their PIDs recorded, stopping them by those
# PIDs, process identities (PID + start time), the per-run state directories that let a rerun
# stop what a killed run left, and free TCP ports. Sourced by scripts/lib.sh.

# Started processes, stopped in two groups: the applications first (newest first), then the
# infrastructure they talk to while draining (the emulator). Parallel arrays: PID, name, log.
APP_PIDS=() APP_NAMES=() APP_LOGS=()
INFRA_PIDS=() INFRA_NAMES=()
# File where the PIDs are also written, so a rerun after `kill -9` can clean up (claim_state_dir).
MIRAI_PID_FILE=""
# Set by a second Ctrl-C while the exit steps run (run_exit_steps): stop waiting, kill.
STOP_FORCE=0
# Whether start_bg has registered stop_started as an exit step.
STOP_STARTED_REGISTERED=0

# Starts "$@" in the background with stdout+stderr to $log; group is app or infra.
# `match` is a string of the process's command line, checked before a later run kills a leftover.
# The first call registers stop_started as an exit step.
start_bg() { # group name log match command...
    local group="$1" name="$2" log="$3" match="$4"
    shift 4
    if ((STOP_STARTED_REGISTERED == 0)); then
        STOP_STARTED_REGISTERED=1
        on_exit stop_started
    fi
    "$@" >"$log" 2>&1 &
    local pid=$!
    if [[ $group == app ]]; then
        APP_PIDS+=("$pid") APP_NAMES+=("$name") APP_LOGS+=("$log")
    else
        INFRA_PIDS+=("$pid") INFRA_NAMES+=("$name")
    fi
    [[ -z $MIRAI_PID_FILE ]] || printf '%s %s %s\n' "$pid" "$name" "$match" >>"$MIRAI_PID_FILE"
    # shellcheck disable=SC2034 # for the caller
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

# Takes state directory $1 over for this run. If an earlier run that used it was killed without
# cleaning up (its owner PID is gone), stops the processes it recorded. If its owner still runs,
# fails: two runs must not share ports or logs.
take_over_state_dir() { # dir what
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
}

# Claims a state directory for this run (take_over_state_dir): the PIDs of what start_bg starts
# are recorded in it from now on, and it is released at exit.
claim_state_dir() { # dir what
    take_over_state_dir "$1" "$2"
    MIRAI_PID_FILE="$1/pids"
    on_exit release_state_dir "$1"
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
