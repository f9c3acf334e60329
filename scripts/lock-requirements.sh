#!/usr/bin/env bash
# Pin requirements/<name>.in into requirements/<name>.txt, one universal lock per venv.
#
#   scripts/lock-requirements.sh                 # every requirements/*.in
#   scripts/lock-requirements.sh whisperx mlx    # only these
#   scripts/lock-requirements.sh -U core         # flags go to uv (here: upgrade everything)
#
# The locks carry environment markers for Linux/macOS/Windows and x86_64/arm64 (--universal), for
# Python >= 3.10, so one file serves every machine. Needs uv (`pip install uv`, or set $UV).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
uv="${UV:-$(command -v uv || true)}"
if [[ -z "$uv" ]]; then
    echo "lock-requirements: uv not found; install it with 'pip install uv' or point \$UV at it" >&2
    exit 2
fi
flags=()
names=()
for arg in "$@"; do
    if [[ "$arg" == -* ]]; then flags+=("$arg"); else names+=("$arg"); fi
done
if [[ ${#names[@]} -eq 0 ]]; then
    for f in "$root"/requirements/*.in; do names+=("$(basename "$f" .in)"); done
fi
cd "$root"
for name in "${names[@]}"; do
    echo "locking requirements/$name.in -> requirements/$name.txt"
    "$uv" pip compile --quiet --universal --python-version 3.10 \
        --custom-compile-command "scripts/lock-requirements.sh $name" \
        ${flags[@]+"${flags[@]}"} \
        --output-file "requirements/$name.txt" "requirements/$name.in"
done
