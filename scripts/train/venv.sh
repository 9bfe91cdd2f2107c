# shellcheck shell=bash
# Sourced by scripts/train/{train,verify,bench}: makes sure the training venv exists and matches
# requirements.txt (scripts/venv), then sets $PY. The venv lives outside the repository (torch
# from PyPI is about 5 GB; the first install takes minutes): $MIRAI_TRAIN_VENV, default
# $HOME/.cache/mirai-train-venv.

TRAIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MIRAI_TRAIN_VENV:-$HOME/.cache/mirai-train-venv}"
say() { printf 'train: %s\n' "$*"; }
die() {
    printf 'train: ERROR: %s\n' "$*" >&2
    exit 1
}

ensure_venv() {
    # shellcheck disable=SC2034 # for the scripts that source this
    PY="$("$TRAIN_DIR/../venv" "$TRAIN_DIR/requirements.txt" "$VENV")" || die "no training venv"
}
