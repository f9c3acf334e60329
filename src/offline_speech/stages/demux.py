"""demux: the job's clip as 16 kHz mono 16-bit WAV (what every ASR backend and aligner reads). Core venv, PyAV.

The first audio stream is decoded by FFmpeg's libraries (inside PyAV's wheels) and converted by its resampler (the
`aresample`/`aformat` pair the ffmpeg CLI uses for `-ac 1 -ar 16000`). Times are the container's presentation times
counted from its start, as in a player and in `ffmpeg -ss`: sample i of the WAV is at `start + i / 16000` s. The
decoder applies what the container says about encoder delay (MP4 edit lists, Opus pre-skip, the LAME header);
Matroska written by ffmpeg before 6.0 says nothing of AAC's priming, which then stays on the file's timeline, where
players and the ffmpeg CLI put it too (the file's picture is moved by as much).

A clip is cut by counting samples, never by a timestamp rounded to a coarser unit: where the container stamps every
sample (MP4, Ogg, WAV, FLAC, MP3, MPEG-TS) the decode starts from a seek PREROLL before the clip; elsewhere
(Matroska and WebM stamp milliseconds) from the beginning, decoding but not resampling what precedes the clip.
Either way the clip's samples are those of a decode of the whole file, from `round(start * 16000)` on.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import wave
from fractions import Fraction
from pathlib import Path

from .audio import SAMPLE_RATE
from .base import Events, StageFailure, for_each_job, main

NAME = "demux"
PREROLL = 0.5  # seconds decoded and resampled before a clip: the decoder and the resampler settle (Opus asks 80 ms)
PROGRESS_EVERY = 0.5  # seconds of wall time between progress events


def _open(media: str):
    import av

    try:
        return av.open(media)
    except av.FFmpegError as exc:
        raise StageFailure(f"ffmpeg could not decode the audio: {exc.strerror or exc}") from None


def _audio(container):
    if not container.streams.audio:
        raise StageFailure("ffmpeg could not decode the audio: the media has no audio stream")
    return container.streams.audio[0]


def _positioned(media: str, start: float):
    """(open container, position of the first decoded sample in source samples from the container's start, its
    rate, the decoded frames). Seeks only where the stream's timestamps name single samples and the seek lands
    before the clip; otherwise decodes from the beginning of a freshly opened container."""
    import av

    container = _open(media)
    stream = _audio(container)
    origin = Fraction(container.start_time or 0, av.time_base)
    exact = stream.time_base is not None and stream.rate and stream.time_base <= Fraction(1, stream.rate)
    if start > PREROLL and exact:
        try:
            container.seek(int((origin + Fraction(start - PREROLL)) * av.time_base))
            frames = container.decode(stream)
            first = next(frames, None)
            if first is not None and first.pts is not None:
                at = first.pts * (first.time_base or stream.time_base) - origin
                if at <= start - PREROLL / 2:
                    return container, round(at * first.sample_rate), first.sample_rate, itertools.chain([first], frames)
        except av.FFmpegError:
            pass
        container.close()
        container = _open(media)
        stream = _audio(container)
    frames = container.decode(stream)
    first = next(frames, None)
    if first is None:
        return container, 0, SAMPLE_RATE, iter(())
    at = first.pts * (first.time_base or stream.time_base) - origin if first.pts is not None else 0
    return container, round(at * first.sample_rate), first.sample_rate, itertools.chain([first], frames)


def _settled(position: int, rate: int, frames, start: float):
    """(time of the first sample to resample, the frames from it): whole frames that end more than PREROLL before
    the clip are dropped unresampled, then the few samples (under 10 ms) up to the next instant that lies on both
    the source grid and the 16 kHz grid counted from the container's start, unless that instant is after `start`.
    The resampler's output then falls on the instants of a decode of the whole file."""
    frames = iter(frames)
    for frame in frames:
        if frame.sample_rate != rate:
            position, rate = round(position * frame.sample_rate / rate), frame.sample_rate
        if (position + frame.samples) / rate <= start - PREROLL:
            position += frame.samples
            continue
        drop = -position % (rate // math.gcd(rate, SAMPLE_RATE))
        if (position + drop) / rate > start:
            drop = 0
        return (position + drop) / rate, _without(drop, itertools.chain([frame], frames))
    return position / rate, iter(())


def _without(drop: int, frames):
    """The frames without their first `drop` samples."""
    for frame in frames:
        if drop >= frame.samples:
            drop -= frame.samples
            continue
        yield _tail(frame, drop) if drop else frame
        drop = 0


def _tail(frame, skip: int):
    """`frame` without its first `skip` samples."""
    import av

    n = frame.samples - skip
    width = frame.format.bytes * (1 if frame.format.is_planar else len(frame.layout.channels))
    tail = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=n, align=1)
    for source, plane in zip(frame.planes, tail.planes):
        plane.update(bytes(source)[skip * width : (skip + n) * width])
    tail.sample_rate = frame.sample_rate
    if frame.pts is not None and frame.time_base:
        tail.time_base = frame.time_base
        tail.pts = frame.pts + round(skip / frame.sample_rate / frame.time_base)
    return tail


def _resampled(frames):
    """16 kHz mono s16 bytes, frame by frame; a change of format, layout or rate mid-stream flushes the resampler
    and starts another (as the ffmpeg CLI reconfigures its filter graph)."""
    import av

    resampler, shape = None, None
    for frame in frames:
        if (frame.format.name, frame.layout.name, frame.sample_rate) != shape:
            if resampler is not None:
                yield from (_pcm(f) for f in resampler.resample(None))
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        yield from (_pcm(f) for f in resampler.resample(frame))
    if resampler is not None:
        yield from (_pcm(f) for f in resampler.resample(None))


def _pcm(frame) -> bytes:
    return bytes(frame.planes[0])[: frame.samples * 2]


def decode(media: str, start: float, end: float, on_progress=None):
    """The 16 kHz mono s16 bytes of [start, end) of the first audio stream of `media`, as they are decoded."""
    import av

    wanted = round((end - start) * SAMPLE_RATE) * 2  # bytes
    done = 0
    container, position, rate, frames = _positioned(media, start)
    with container:
        try:
            at, frames = _settled(position, rate, frames, start)
            lead = round((at - start) * SAMPLE_RATE) * 2  # > 0: the stream begins after `start`: silence first
            if lead > 0:
                done = min(lead, wanted)
                yield bytes(done)
            skip, reported = max(0, -lead), time.monotonic()
            for pcm in _resampled(frames):
                if skip:
                    cut = min(skip, len(pcm))
                    pcm, skip = pcm[cut:], skip - cut
                pcm = pcm[: wanted - done]
                if pcm:
                    done += len(pcm)
                    yield pcm
                if done >= wanted:
                    break
                if on_progress and time.monotonic() - reported >= PROGRESS_EVERY:
                    on_progress(done / 2 / SAMPLE_RATE)
                    reported = time.monotonic()
        except av.FFmpegError as exc:
            raise StageFailure(f"ffmpeg could not decode the audio: {exc.strerror or exc}") from None
    if on_progress:
        on_progress(done / 2 / SAMPLE_RATE)


def extract(media: str, start: float, end: float, dest: Path, on_progress=None) -> None:
    """Decode [start, end) of the first audio stream of `media` into `dest` as 16 kHz mono 16-bit WAV (atomically)."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp.wav")
    try:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            for pcm in decode(media, start, end, on_progress):
                out.writeframesraw(pcm)
        if tmp.stat().st_size <= 44:
            raise StageFailure("ffmpeg produced no audio for the clip")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def run(request: dict, events: Events) -> None:
    def work(job: dict) -> dict:
        clip = job["job"]["clip"]
        dest = Path(job["outputs"]["audio"])
        extract(job["job"]["media"]["path"], clip["start"], clip["end"], dest, lambda s: events.progress(job["id"], s))
        seconds = (dest.stat().st_size - 44) / (2 * SAMPLE_RATE)
        events.log(job["id"], f"decoded {seconds:.3f} s of audio at {SAMPLE_RATE} Hz mono into {dest.name}")
        return {"audio_seconds": round(seconds, 3)}

    # FFmpeg's decoders run without the GIL: a few jobs side by side keep the cores busy
    for_each_job(request, events, work, workers=min(len(request["jobs"]), max(2, os.cpu_count() or 1), 8))


if __name__ == "__main__":
    main(run)
