# shellcheck shell=bash
# Sourced by scripts/train/{train,verify,test,bench}: makes sure the training venv exists and
# matches requirements.txt, then sets $PY. The venv lives outside the repository (torch from
# PyPI is about 5 GB): $MIRAI_TRAIN_VENV, default $HOME/.cache/mirai-train-venv.

TRAIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${MIRAI_TRAIN_VENV:-$HOME/.cache/mirai-train-venv}"
say() { printf 'train: %s\n' "$*"; }
die() {
    printf 'train: ERROR: %s\n' "$*" >&2
    exit 1
}

ensure_venv() {
    local want have stamp="$VENV/.mirai-requirements.sha256"
    want="$(sha256sum "$TRAIN_DIR/requirements.txt" | cut -d' ' -f1)"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [[ ! -x $VENV/bin/python ]]; then
        command -v python3 >/dev/null || die "python3 (3.11) is needed to create $VENV"
        say "creating venv $VENV"
        python3 -m venv "$VENV" || die "could not create $VENV"
    fi
    if [[ $want != "$have" ]]; then
        say "installing scripts/train/requirements.txt into $VENV (torch is ~5 GB; minutes)"
        "$VENV/bin/pip" install --quiet -r "$TRAIN_DIR/requirements.txt" || die "pip install failed"
        echo "$want" >"$stamp"
    fi
    # shellcheck disable=SC2034 # for the scripts that source this
    PY="$VENV/bin/python"
}
