#!/usr/bin/env bash
# Create the Mesmer environment: a Python 3.10 virtualenv at <repo>/.mesmer-env with DeepCell,
# TensorFlow 2.8, zarr 2 and dagster-pipes (mesmer_env/requirements.txt). Idempotent: a second
# run with unchanged requirements does nothing.
#
# Python 3.10 is taken from $MESMER_PYTHON, else `pyenv which python3.10`, else python3.10 on
# PATH, else the newest 3.10 under `pyenv root`/versions.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
env_dir="${MESMER_ENV_DIR:-$repo/.mesmer-env}"
requirements="$here/requirements.txt"
stamp="$env_dir/.installed"

find_python() {
    if [[ -n "${MESMER_PYTHON:-}" ]]; then
        echo "$MESMER_PYTHON"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        if pyenv which python3.10 >/dev/null 2>&1; then
            pyenv which python3.10
            return
        fi
    fi
    if command -v python3.10 >/dev/null 2>&1 && python3.10 --version >/dev/null 2>&1; then
        command -v python3.10
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        local candidate
        candidate="$(ls -d "$(pyenv root)"/versions/3.10*/bin/python3.10 2>/dev/null | sort -V | tail -n 1)"
        if [[ -n "$candidate" ]]; then
            echo "$candidate"
            return
        fi
    fi
    return 1
}

wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" && -x "$env_dir/bin/python" ]]; then
    echo "Mesmer environment is up to date: $env_dir"
    exit 0
fi

if ! python="$(find_python)"; then
    echo "error: Python 3.10 is needed for the Mesmer environment (DeepCell needs Python < 3.11" >&2
    echo "and TensorFlow 2.8) and none was found. Install it (e.g. 'pyenv install 3.10'," >&2
    echo "or your system's python3.10 package) or set MESMER_PYTHON=/path/to/python3.10." >&2
    exit 1
fi
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.10" ]]; then
    echo "error: $python is Python $version; the Mesmer environment needs Python 3.10." >&2
    exit 1
fi

echo "Creating the Mesmer environment in $env_dir with $python"
if [[ ! -x "$env_dir/bin/python" ]]; then
    "$python" -m venv "$env_dir"
fi
"$env_dir/bin/python" -m pip install -q --upgrade "pip<25" "setuptools<70" wheel
"$env_dir/bin/python" -m pip install -q -r "$requirements"
"$env_dir/bin/python" -c 'import deepcell.applications, zarr, dagster_pipes' 2>/dev/null \
    || { echo "error: the Mesmer environment in $env_dir does not import deepcell." >&2; exit 1; }
echo "$wanted" > "$stamp"
echo "Mesmer environment ready: $env_dir/bin/python"
