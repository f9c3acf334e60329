"""Probe, demux and mux through PyAV (FFmpeg's libraries inside its wheels): no ffmpeg program is needed.

Real media is made here from the committed speech clip: by the ffmpeg CLI where it is installed (it is then also the
reference: its `-ac 1 -ar 16000` decode, ffprobe's view of what we mux), by PyAV or the standard library otherwise.
Then the pipeline and the demo run with no ffmpeg or ffprobe on PATH.
"""

from __future__ import annotations

import array
import json
import math
import operator
import os
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import pytest

from offline_speech.media import MediaError, probe
from offline_speech.schema import output_name
from offline_speech.stages import demux, mux
from support import ROOT
from support.media import CONTAINERS
from support.sample import CLIP, REFERENCE, SENTENCES, parse_srt
from support.shell import prepare, run_pipeline, shim_env, venv_python
from support.wer import word_error_rate

FFMPEG, FFPROBE = shutil.which("ffmpeg"), shutil.which("ffprobe")
reference = pytest.mark.skipif(not (FFMPEG and FFPROBE), reason="the ffmpeg CLI (the reference here) is not installed")
RATE = demux.SAMPLE_RATE
SECONDS = 12.0  # of the speech clip in each container
HIDDEN = ("ffmpeg", "ffprobe", "ffplay")
CUES = {
    "en": [(1.0, 2.5, "The little town was built\nbeside the wide river."), (4.0, 5.25, "if x <y and a & b --> c")],
    "hi": [(1.0, 2.5, "आज मौसम बहुत अच्छा है।"), (9.5, 11.0, "यह किताब मेरी है।")],
}
NAMES = {"en": ("eng", "English"), "hi": ("hin", "Hindi")}


def ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-nostdin", "-v", "error", "-y", *args], check=True)


def ffprobe_json(path: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [FFPROBE, "-v", "error", *extra, "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def ffprobe_streams(path: Path, *extra: str) -> list[dict]:
    return ffprobe_json(path, *extra)["streams"]


def reference_decode(path: Path) -> array.array:
    """What `ffmpeg -i path -ac 1 -ar 16000` makes of the first audio stream, as 16-bit samples."""
    proc = subprocess.run(
        [
            FFMPEG,
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
    )
    return array.array("h", proc.stdout)


def ours(path: Path, start: float, end: float) -> array.array:
    return array.array("h", b"".join(demux.decode(str(path), start, end)))


def offset(signal: array.array, ref: array.array, span: int = 800) -> tuple[int, float]:
    """(lag, correlation): signal[i + lag] best matches ref[i] (lag > 0: `signal` is late), searched over +-span
    samples (+-50 ms, beyond AAC's 21 ms of priming) on the loudest half second of `ref`."""
    window = RATE // 2

    def dot(a, b) -> float:
        return float(sum(map(operator.mul, a, b)))

    window = RATE // 2
    starts = range(span, len(ref) - window - span, window // 4)
    at = max(starts, key=lambda i: dot(ref[i : i + window], ref[i : i + window]))
    piece = ref[at : at + window]
    best = (0, -2.0)
    for lag in range(-span, span + 1):
        other = signal[at + lag : at + lag + window]
        if len(other) == window:
            c = dot(piece, other) / (math.sqrt(dot(piece, piece) * dot(other, other)) or 1.0)
            best = max(best, (lag, c), key=lambda b: b[1])
    return best


def path_without_ffmpeg(tmp: Path) -> str:
    """A PATH holding a link to every program on ours except ffmpeg, ffprobe and ffplay."""
    folder = tmp / "bin-without-ffmpeg"
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if (
                entry.name not in HIDDEN
                and not os.path.lexists(link)
                and os.access(entry.path, os.X_OK)
                and not entry.is_dir()
            ):
                link.symlink_to(entry.path)
    return str(folder)


def video_with_speech(dest: Path, seconds: float) -> Path:
    """An MP4 made by PyAV alone: a small H.264 picture and the clip's first `seconds` of speech as AAC."""
    with av.open(str(CLIP)) as src, av.open(str(dest), "w") as out:
        video = out.add_stream("libx264", rate=5)
        video.width, video.height, video.pix_fmt = 64, 36, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.bit_rate = 64000
        for i in range(int(seconds * 5)):
            frame = av.VideoFrame(64, 36, "yuv420p")
            for plane, value in zip(frame.planes, (41, 240, 110)):
                plane.update(bytes([value]) * plane.buffer_size)
            frame.pts, frame.time_base = i, Fraction(1, 5)
            out.mux(video.encode(frame))
        for frame in src.decode(audio=0):
            if frame.pts * frame.time_base >= seconds:
                break
            out.mux(audio.encode(frame))  # with its timestamps: the AAC priming goes into the MP4's edit list
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return dest


def write_srt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    path.write_text(
        "\n".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict[str, Path]:
    """The first SECONDS of the speech clip in each container, made by the ffmpeg CLI."""
    if not (FFMPEG and FFPROBE):
        pytest.skip("the ffmpeg CLI (the reference here) is not installed")
    folder = tmp_path_factory.mktemp("media")
    files = {}
    for ext, args in CONTAINERS.items():
        files[ext] = folder / f"speech.{ext}"
        ffmpeg(
            "-f",
            "lavfi",
            "-i",
            "color=c=navy:size=64x36:rate=5",
            "-i",
            str(CLIP),
            "-t",
            str(SECONDS),
            *args,
            str(files[ext]),
        )
    return files


@reference
@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_demux_matches_the_ffmpeg_cli_sample_for_sample(encoded, ext):
    """The whole stream: the same length as `ffmpeg -ac 1 -ar 16000`, not one sample early or late; cut at the
    probed duration (the default clip), the job's length to the sample."""
    path = encoded[ext]
    info = probe(path)
    ref = reference_decode(path)
    full = ours(path, 0.0, info.duration + 1.0)
    lag, correlation = offset(full, ref)
    print(f"{ext}: {len(full)} samples (ffmpeg {len(ref)}), offset {lag}, correlation {correlation:.5f}")
    assert lag == 0 and correlation > 0.999
    assert abs(len(full) - len(ref)) <= 1
    assert len(ours(path, 0.0, info.duration)) == min(round(info.duration * RATE), len(full))
    seen = ffprobe_json(path)
    durations = [seen["format"].get("duration")] + [
        s.get("duration") for s in seen["streams"] if s["codec_type"] == "audio"
    ]
    assert (
        abs(info.duration - max(float(d) for d in durations if d not in (None, "N/A"))) < 0.05
    )  # ffmpeg 5.1's MP3: +36 ms
    assert info.audio_streams == 1


@reference
@pytest.mark.parametrize("ext", list(CONTAINERS))
def test_a_clip_is_the_whole_decode_cut_at_its_times(encoded, ext):
    """[start, end): exactly round((end - start) * 16000) samples, from sample round(start * 16000) of the whole."""
    path = encoded[ext]
    whole = ours(path, 0.0, SECONDS)
    for start, end in ((3.3, 7.9), (0.25, 1.0), (9.0123, 11.5)):
        clip = ours(path, start, end)
        assert len(clip) == round((end - start) * RATE)
        cut = whole[round(start * RATE) :]
        lag, correlation = offset(clip + array.array("h", bytes(2 * 1600)), cut[: len(clip) + 1600], span=400)
        assert (lag, ext) == (0, ext) and correlation > 0.99, (start, end, lag, correlation)


def _click_wav(path: Path, rate: int = 44100, at: float = 1.0, seconds: float = 3.0) -> Path:
    samples = array.array("h", bytes(4 * round(seconds * rate)))
    samples[2 * round(at * rate)] = samples[2 * round(at * rate) + 1] = 30000
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def _peak(path: Path, start: float) -> int:
    pcm = ours(path, start, 3.0)
    return max(range(len(pcm)), key=lambda i: abs(pcm[i]))


def test_a_click_at_one_second_lands_on_sample_16000(tmp_path):
    """Absolute time, no reference needed: a click at 1.000 s of a 44.1 kHz WAV is sample 16000 of the whole decode
    and sample 4800 of a clip from 0.7 s."""
    wav = _click_wav(tmp_path / "click.wav")
    assert (_peak(wav, 0.0), _peak(wav, 0.7)) == (16000, 4800)


@reference
@pytest.mark.parametrize(
    "ext, args",
    [("m4a", ["-c:a", "aac", "-b:a", "128k"]), ("opus", ["-c:a", "libopus"]), ("mp3", ["-c:a", "libmp3lame"])],
)
def test_encoder_delay_is_trimmed(tmp_path, ext, args):
    """AAC priming (the MP4 edit list), Opus pre-skip and the MP3 encoder delay (LAME header) are not audio: the
    click stays at 1.000 s, in the whole decode and in a clip that starts with a seek."""
    encoded = tmp_path / f"click.{ext}"
    ffmpeg("-i", str(_click_wav(tmp_path / "click.wav")), *args, str(encoded))
    assert abs(_peak(encoded, 0.0) - 16000) <= 1 and abs(_peak(encoded, 0.7) - 4800) <= 1


def test_probe_errors_are_one_line(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(MediaError, match=r"not a media file ffmpeg can read \(Invalid data found"):
        probe(text)
    silent = tmp_path / "silent.mp4"
    with av.open(str(silent), "w") as out:
        video = out.add_stream("mpeg4", rate=5)
        video.width, video.height = 64, 32
        for i in range(5):
            frame = av.VideoFrame(64, 32, "yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 5)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    with pytest.raises(MediaError, match="has no audio stream"):
        probe(silent)


def _tracks(folder: Path) -> list[dict]:
    return [
        {
            "path": str(write_srt(folder / f"talk.{lang}.srt", CUES[lang])),
            "iso639_2": NAMES[lang][0],
            "title": NAMES[lang][1],
        }
        for lang in ("en", "hi")
    ]


def _subtitles_via_av(path: Path) -> list[tuple[str, str, bool, list[tuple[float, float, str]]]]:
    """(language, name, default, cues) of each subtitle track, read back through PyAV."""
    mp4 = path.suffix == ".mp4"
    with av.open(str(path)) as container:
        tracks = {
            s.index: (
                s.metadata.get("language"),
                s.metadata.get("handler_name" if mp4 else "title"),
                bool(s.disposition & av.stream.Disposition.default),
                [],
            )
            for s in container.streams.subtitles
        }
        for packet in container.demux(*container.streams.subtitles):
            data = bytes(packet)
            text = (data[2:] if mp4 else data).decode("utf-8").replace("\r\n", "\n")
            if packet.size and text:  # MP4 fills the gaps between cues with empty samples
                start, end = packet.pts * packet.time_base, (packet.pts + packet.duration) * packet.time_base
                tracks[packet.stream.index][3].append((round(float(start), 3), round(float(end), 3), text))
    return list(tracks.values())


def _subtitles_via_ffprobe(path: Path) -> list[tuple[str, str, str, int]]:
    """(codec, language, name, default) of each subtitle track as ffprobe shows them (MP4 names: handler_name)."""
    name = "handler_name" if path.suffix == ".mp4" else "title"
    return [
        (s["codec_name"], s["tags"]["language"], s["tags"][name], s["disposition"]["default"])
        for s in ffprobe_streams(path)
        if s["codec_type"] == "subtitle"
    ]


def _originals(path: Path) -> list[tuple[str, str, int]]:
    """(type, codec, packets) of each stream but the subtitles, per ffprobe."""
    return [
        (s["codec_type"], s["codec_name"], s["nb_read_packets"])
        for s in ffprobe_streams(path, "-count_packets")
        if s["codec_type"] != "subtitle"
    ]


@reference
@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_muxed_tracks_have_language_and_name_and_the_originals_are_untouched(encoded, tmp_path, ext):
    source, dest, again = encoded[ext], tmp_path / f"out.{ext}", tmp_path / f"again.{ext}"
    codec = "mov_text" if ext == "mp4" else "subrip"
    assert mux.mux(str(source), _tracks(tmp_path), dest) == 0
    assert _subtitles_via_ffprobe(dest) == [(codec, "eng", "English", 1), (codec, "hin", "Hindi", 0)]
    assert _originals(dest) == _originals(source)
    assert _subtitles_via_av(dest) == [("eng", "English", True, CUES["en"]), ("hin", "Hindi", False, CUES["hi"])]
    assert mux.mux(str(dest), _tracks(tmp_path)[:1], again) == 2  # the tracks it had stay first
    assert [t[:3] for t in _subtitles_via_av(again)] == [
        ("eng", "English", True),
        ("hin", "Hindi", False),
        ("eng", "English", False),
    ]


@pytest.fixture()
def no_ffmpeg(tmp_path, monkeypatch) -> str:
    """PATH without ffmpeg's programs, for this test and the processes it starts."""
    path = path_without_ffmpeg(tmp_path)
    monkeypatch.setenv("PATH", path)
    assert shutil.which("ffmpeg") is None and shutil.which("ffprobe") is None
    return path


def test_jobs_run_without_ffmpeg_on_path(provisioned, tmp_path, no_ffmpeg):
    """prepare-job and run-pipeline with no ffmpeg or ffprobe anywhere on PATH: the committed Opus clip and an MP4
    made by PyAV, transcribed offline; the demux and mux stages on their own, as the runner starts them."""
    video = video_with_speech(tmp_path / "talk.mp4", 9.0)
    out = tmp_path / "out"
    ids = [
        prepare(out, provisioned, "-s", "en", "--no-align", "--end-time", "9", media=m, netns=True)
        for m in (CLIP, video)
    ]
    run_pipeline(out, provisioned, *ids, netns=True)
    expected = " ".join(s["text"] for s in SENTENCES if s["end"] <= 9.0)
    for job_id, stem in zip(ids, ("speech-en", "talk")):
        cues = parse_srt(out / job_id / f"{stem}.en.srt")
        assert word_error_rate(expected, " ".join(c[2] for c in cues)) <= 0.2, cues
        assert abs(cues[0][0] - SENTENCES[0]["start"]) < 0.5
    for media in (CLIP, video):  # the mux stage as a process, as the runner starts it
        dest = tmp_path / output_name(str(media))
        job = {
            "id": "j",
            "dir": str(tmp_path),
            "job": {"media": {"path": str(media)}},
            "tracks": _tracks(tmp_path),
            "outputs": {"media": str(dest)},
        }
        request = tmp_path / "request.json"
        request.write_text(json.dumps({"schema": 1, "stage": "mux", "options": {}, "models": {}, "jobs": [job]}))
        proc = subprocess.run(
            [str(venv_python("core")), "-m", "offline_speech.stages.mux", str(request)],
            capture_output=True,
            text=True,
            env=shim_env(tmp_path) | {"PYTHONPATH": str(ROOT / "src")},
        )
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        assert [e["event"] for e in events] == ["job_started", "log", "job_done", "finished"], proc.stdout + proc.stderr
        assert _subtitles_via_av(dest) == [("eng", "English", True, CUES["en"]), ("hin", "Hindi", False, CUES["hi"])]


def test_a_subtitle_job_muxes_mp4_and_mkv_without_ffmpeg_on_path(provisioned, tmp_path, no_ffmpeg):
    """Issue 10's proof: a subtitle job on a machine without ffmpeg gives an MP4 and an MKV whose track carries its
    language and name and the job's cues."""
    video = video_with_speech(tmp_path / "talk.mp4", 9.0)
    out = tmp_path / "out"
    ids = [
        prepare(
            out, provisioned, "--workflow", "subtitle", "-s", "en", "--no-align", "--end-time", "9", media=m, netns=True
        )
        for m in (video, CLIP)
    ]
    run_pipeline(out, provisioned, *ids, netns=True)
    for job_id, media in zip(ids, (video, CLIP)):
        muxed = out / job_id / output_name(str(media))
        tracks = _subtitles_via_av(muxed)
        assert [t[:3] for t in tracks] == [("eng", "English", True)]
        srt = parse_srt(out / job_id / f"{media.stem}.en.srt")
        assert [(a, b, " ".join(t.split())) for a, b, t in tracks[0][3]] == [
            (round(a, 3), round(b, 3), t) for a, b, t in srt
        ]
        if FFPROBE:  # the reference, where installed (found before PATH lost it)
            codec = "mov_text" if muxed.suffix == ".mp4" else "subrip"
            assert _subtitles_via_ffprobe(muxed) == [(codec, "eng", "English", 1)]


def test_the_demo_prints_subtitles_without_ffmpeg_on_path(tmp_path, no_ffmpeg):
    """The README's first command on a machine without ffmpeg (its own cache here, so the project's stays as is)."""
    env = shim_env(tmp_path / "cache") | {"HOME": str(tmp_path)}
    proc = subprocess.run([str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    printed = proc.stdout.split("==> out/", 1)[1]
    job_id = printed.split("/", 1)[0]
    try:
        srt = printed.split("\n", 1)[1]
        assert "-->" in srt
        text = " ".join(line for line in srt.splitlines() if line and not line[0].isdigit())
        assert word_error_rate(REFERENCE.read_text(), text) <= 0.15, text
    finally:
        shutil.rmtree(ROOT / "out" / job_id, ignore_errors=True)
