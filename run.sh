#!/usr/bin/env bash
# One command for everything: `./run.sh` sets up and launches the dashboard on the built-in demo;
# `./run.sh test` sets up and runs the whole test suite. Extra arguments go to streamlit / pytest.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "==> creating virtual environment in $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall only when requirements.txt changed since the last successful install.
    local stamp="$VENV/.requirements.sha256"
    local want
    want=$(sha256sum requirements.txt | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "==> installing requirements (2-3 minutes and 6.6 GB the first time)"
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
        "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r requirements.txt
        echo "$want" > "$stamp"
    fi
}

cmd=${1:-run}
case "$cmd" in -*) cmd=run; set -- run "$@" ;; esac  # `./run.sh --server.port 8600` means run
case "$cmd" in
    run)
        shift || true
        setup
        echo "==> launching the dashboard (its address is printed below; Ctrl+C to stop)"
        exec "$VENV/bin/python" -m streamlit run dashboard/app.py "$@"
        ;;
    test)
        shift
        setup
        export HF_HUB_OFFLINE=1
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    setup)
        setup
        ;;
    *)
        echo "usage: ./run.sh [run|test|setup] [extra arguments]" >&2
        exit 2
        ;;
esac
