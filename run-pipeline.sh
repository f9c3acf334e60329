#!/usr/bin/env bash
# Run prepared jobs offline, stage by stage: ./run-pipeline.sh -j ID [-j ID ...]. All logic lives in src/offline_speech.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$root/venv/core/bin/python"
if [ ! -x "$py" ]; then
  echo "error: $root/venv/core is missing: run ./venv-setup core first" >&2
  exit 2
fi
exec "$py" -m offline_speech run-pipeline "$@"
