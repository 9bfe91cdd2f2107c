# shellcheck shell=bash
# Shared functions of the scripts under scripts/. Source it; don't run it. It holds the logging
# and sources the rest, one file per concern, from scripts/lib/:
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
