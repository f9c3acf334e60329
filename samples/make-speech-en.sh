#!/usr/bin/env bash
# Regenerate samples/speech-en.opus and samples/speech-en.json from
# samples/speech-en.txt (one sentence per line).
#
# Each sentence is spoken by espeak-ng (voice en-us), resampled to 16 kHz mono,
# trimmed of espeak's own leading/trailing silence, and joined with a fixed
# pause so a VAD splits the sentences. The result is encoded as Ogg/Opus and the
# sentence boundaries (seconds in the final clip) are written to the JSON file.
#
# Requires: espeak-ng, ffmpeg (with libopus), python3 (standard library only).
# Output is deterministic for a given espeak-ng / ffmpeg / libopus version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
text="${here}/speech-en.txt"
out_opus="${here}/speech-en.opus"
out_json="${here}/speech-en.json"

VOICE="en-us"
RATE=150          # words per minute
PITCH=45          # 0-99, espeak-ng default 50
GAP_S=0.7         # silence between sentences
EDGE_S=0.3        # silence before the first and after the last sentence
BITRATE="24k"

for tool in espeak-ng ffmpeg python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

n=0
while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -z "${line//[[:space:]]/}" ]] && continue
    n=$((n + 1))
    seg="$(printf '%s/seg%03d' "$work" "$n")"
    printf '%s\n' "$line" > "${seg}.txt"
    espeak-ng -v "$VOICE" -s "$RATE" -p "$PITCH" -w "${seg}.raw.wav" -f "${seg}.txt"
    ffmpeg -nostdin -hide_banner -loglevel error -y -i "${seg}.raw.wav" \
        -ac 1 -ar 16000 -c:a pcm_s16le -bitexact "${seg}.wav"
done < "$text"

if [[ "$n" -eq 0 ]]; then
    echo "no sentences in $text" >&2
    exit 1
fi

# Trim, join with silence, and record sentence boundaries.
python3 - "$work" "$n" "$GAP_S" "$EDGE_S" "$out_json" <<'PY'
import array
import json
import sys
import wave

work, n, gap_s, edge_s, out_json = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
RATE = 16000
THRESH = 200          # |sample| above this counts as speech (about -44 dBFS)
MARGIN = int(0.03 * RATE)


def read(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == RATE
        a = array.array("h")
        a.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder != "little":
        a.byteswap()
    return a


def trim(a):
    idx = [i for i, v in enumerate(a) if abs(v) > THRESH]
    if not idx:
        return a
    return a[max(0, idx[0] - MARGIN):min(len(a), idx[-1] + 1 + MARGIN)]


out = array.array("h", bytes(2 * int(round(edge_s * RATE))))
gap = array.array("h", bytes(2 * int(round(gap_s * RATE))))
sentences = []
for i in range(1, n + 1):
    with open(f"{work}/seg{i:03d}.txt", encoding="utf-8") as f:
        text = f.read().strip()
    seg = trim(read(f"{work}/seg{i:03d}.wav"))
    if i > 1:
        out.extend(gap)
    start = len(out)
    out.extend(seg)
    sentences.append({"text": text, "start": round(start / RATE, 3), "end": round(len(out) / RATE, 3)})
out.extend(array.array("h", bytes(2 * int(round(edge_s * RATE)))))

if sys.byteorder != "little":
    out.byteswap()
with wave.open(f"{work}/full.wav", "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(RATE)
    w.writeframes(out.tobytes())

with open(out_json, "w", encoding="utf-8") as f:
    json.dump({"sentences": sentences, "duration": round(len(out) / RATE, 3)}, f, indent=2)
    f.write("\n")
PY

ffmpeg -nostdin -hide_banner -loglevel error -y -i "${work}/full.wav" \
    -map_metadata -1 -ac 1 -ar 16000 -c:a libopus -b:a "$BITRATE" -application voip \
    -fflags +bitexact -flags:a +bitexact "$out_opus"

echo "wrote $out_opus ($(stat -c %s "$out_opus") bytes), $out_json ($n sentences)"
