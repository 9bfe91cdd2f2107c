# shellcheck shell=bash
# Shared functions of the scripts under scripts/. Source it; don't run it. It holds the logging
# and the exit steps (on_exit, install_exit_traps) and sources the rest, one file per concern,
# from scripts/lib/:
#   process.sh   background processes and their PIDs, state directories, ports
#   postgres.sh  the PostgreSQL server and the service databases
#   redis.sh     Redis
#   pubsub.sh    the Pub/Sub emulator
#   identity.sh  the internal identity keys
#
# Every function prints what it does (prefix: $MIRAI_LOG_PREFIX) and fails loudly. Processes are
# only ever stopped by the PID this script recorded when it started them (or, for leftovers of
# a killed earlier run, by the PID that run recorded, after checking the command line still
# matches), never by name.

MIRAI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MIRAI_LOG_PREFIX="${MIRAI_LOG_PREFIX:-mirai}"

say() { printf '%s: %s\n' "$MIRAI_LOG_PREFIX" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$MIRAI_LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: ERROR: %s\n' "$MIRAI_LOG_PREFIX" "$*" >&2
    exit 1
}

# bash cannot trap a signal that was already ignored when it started, and a background job of a
# non-interactive shell starts with SIGINT ignored. Re-exec the script once with SIGINT's default
# disposition so that `kill -INT` (and Ctrl-C) still runs its exit steps.
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

# === Exit steps ===================================================================================
# What a script undoes when it exits, for whatever reason, registered as it goes with
# `on_exit command [args...]`. The library registers its own where it starts something
# (start_bg: stop_started; start_private_postgres: stop_private_postgres; ensure_redis:
# stop_redis; claim_state_dir: release_state_dir); a script adds its own. At exit the steps run
# once, last registered first, so what was started later (and uses what was started earlier)
# stops first and the state dir is released last. A step that fails is reported and the others
# still run; inside a step errexit is off (bash ignores it under `||`), so a failing command does
# not end the step either. They run only in a script that called install_exit_traps.

EXIT_STEPS=()       # each a command line, quoted for eval
EXIT_FIRST_STEPS=() # on_exit_first: run before EXIT_STEPS, in registration order
EXIT_STEPS_RAN=0
# The script's exit status, set before the steps run (for a step that reports it).
EXIT_STATUS=""

on_exit() { # command [args...]
    local step
    printf -v step '%q ' "$@"
    EXIT_STEPS+=("${step% }")
}

# Registers a step that runs before every on_exit step, however late it is registered (e.g. a
# message announcing the shutdown).
on_exit_first() { # command [args...]
    local step
    printf -v step '%q ' "$@"
    EXIT_FIRST_STEPS+=("${step% }")
}

run_exit_steps() {
    ((EXIT_STEPS_RAN == 0)) || return 0
    EXIT_STEPS_RAN=1
    # A second Ctrl-C while stopping: stop waiting for graceful exits and kill (stop_pids).
    trap 'STOP_FORCE=1' INT TERM
    local steps=("${EXIT_FIRST_STEPS[@]}") step i
    for ((i = ${#EXIT_STEPS[@]} - 1; i >= 0; i--)); do steps+=("${EXIT_STEPS[$i]}"); done
    for step in "${steps[@]}"; do
        eval "$step" || warn "exit step failed (status $?): $step"
    done
}

# The standard traps: at exit the steps run and the exit status is kept; SIGINT exits 130,
# SIGTERM and SIGHUP 143 (through the exit steps). A script may then replace the INT/TERM/HUP
# traps (scripts/dev-up exits 0 on them).
install_exit_traps() {
    trap 'EXIT_STATUS=$?; run_exit_steps; exit "$EXIT_STATUS"' EXIT
    trap 'say "interrupted"; exit 130' INT
    trap 'say "terminated"; exit 143' TERM HUP
}

# shellcheck source=scripts/lib/process.sh
source "$MIRAI_ROOT/scripts/lib/process.sh"
# shellcheck source=scripts/lib/postgres.sh
source "$MIRAI_ROOT/scripts/lib/postgres.sh"
# shellcheck source=scripts/lib/redis.sh
source "$MIRAI_ROOT/scripts/lib/redis.sh"
# shellcheck source=scripts/lib/pubsub.sh
source "$MIRAI_ROOT/scripts/lib/pubsub.sh"
# shellcheck source=scripts/lib/identity.sh
source "$MIRAI_ROOT/scripts/lib/identity.sh"
