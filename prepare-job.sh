#!/usr/bin/env bash
# Validate media and settings into out/<id>/job.json; prints the job id. All logic lives in src/offline_speech.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$root/venv/core/bin/python"
if [ ! -x "$py" ]; then
  echo "error: $root/venv/core is missing: run ./venv-setup core first" >&2
  exit 2
fi
exec "$py" -m offline_speech prepare-job "$@"
