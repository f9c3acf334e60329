#!/usr/bin/env bash
# Run prepared jobs offline, stage by stage: ./run-pipeline.sh -j ID [-j ID ...]
# All logic lives in src/offline_speech; this only finds the project (through symlinks) and its core venv.
set -euo pipefail
self="$(readlink -f -- "${BASH_SOURCE[0]}" 2>/dev/null || python3 -c 'import os, sys; print(os.path.realpath(sys.argv[1]))' "${BASH_SOURCE[0]}")"
root="${self%/*}"
py="$root/venv/core/bin/python"
if [[ ! -x "$py" ]]; then
  echo "error: $root/venv/core is missing: run $root/venv-setup core first" >&2
  exit 2
fi
exec "$py" -m offline_speech run-pipeline "$@"
