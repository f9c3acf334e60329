"""mux: the original media with one soft subtitle track per language (subtitle workflow). Core venv, PyAV.

Every video, audio and subtitle stream of the original is copied packet by packet, without re-encoding, with its
metadata, disposition and the chapters; the job's subtitles (source language first, then each target in -t order)
are added as tracks tagged with their ISO 639-2 code and named after the language. MP4-family inputs (.mp4 .m4v
.mov) stay MP4 with mov_text tracks, named in `handler_name` (what players list; a bare mov_text track would be
"SubtitleHandler"); every other input becomes Matroska (.mkv) with SubRip tracks named in `title`. Subtitle times
are positions in the original media counted from its start (the demux stage's times), so a clip's cues line up.

FFmpeg's mov_text and SubRip encoders cannot be fed from Python, but their packets are simple: the cue's text
(mov_text: as a tx3g sample, a 16-bit length before the UTF-8 text). The encoders are opened only so that they
write the track headers (mov_text's tx3g sample description: the style FFmpeg gives SRT input, Arial 16, white,
centred at the bottom); the packets are built here from the SRT files, read by FFmpeg's own SRT demuxer.
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path

from ..schema import MP4_FAMILY
from .base import Events, StageFailure, for_each_job, main

NAME = "mux"
COPIED = ("video", "audio", "subtitle")
MS = Fraction(1, 1000)  # SRT times are milliseconds
# The ASS header FFmpeg's SRT decoder hands its encoders: one Default style, which mov_text turns into its tx3g box.
ASS_HEADER = b"""[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288
ScaledBorderAndShadow: yes
YCbCr Matrix: None

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""


def read_cues(path: str) -> list[tuple[int, int, str]]:
    """(start ms, duration ms, text) of each cue of an SRT file, read by FFmpeg's SRT demuxer."""
    import av

    with av.open(path, format="srt") as srt:
        return [(p.pts, p.duration, bytes(p).decode("utf-8")) for p in srt.demux() if p.size and p.pts is not None]


def _payload(text: str, mp4: bool) -> bytes:
    """A cue as a packet: a tx3g sample for mov_text, SubRip text with CRLF line breaks for Matroska (what FFmpeg's
    encoders write)."""
    if mp4:
        data = text.encode("utf-8")
        return struct.pack(">H", len(data)) + data
    return "\r\n".join(text.splitlines()).encode("utf-8")


def _add_track(out, track: dict, mp4: bool, default: bool):
    import av

    stream = out.add_stream("mov_text" if mp4 else "subrip")
    stream.codec_context.subtitle_header = ASS_HEADER
    stream.codec_context.time_base = MS
    stream.time_base = MS
    stream.metadata["language"] = track["iso639_2"]
    stream.metadata["title"] = track["title"]
    if mp4:
        stream.metadata["handler_name"] = track["title"]
    stream.disposition = av.stream.Disposition.default if default else av.stream.Disposition(0)
    return stream


def _packets(stream, cues: list[tuple[int, int, str]], origin_ms: int, mp4: bool):
    """(time in seconds, packet) for each cue, on the original media's timeline."""
    import av

    for start, duration, text in cues:
        packet = av.Packet(_payload(text, mp4))
        packet.pts = packet.dts = start + origin_ms
        packet.duration = duration
        packet.time_base = MS
        packet.stream = stream
        yield (start + origin_ms) * MS, packet


def mux(media: str, tracks: list[dict], dest: Path) -> int:
    """Write `media` with `tracks` ({path, iso639_2, title}) added into `dest`; returns the number of subtitle
    tracks the media already had (kept, before the new ones)."""
    import av

    mp4 = Path(media).suffix.lower() in MP4_FAMILY  # dest may be a temporary name: decide from the media
    cues = [read_cues(track["path"]) for track in tracks]
    with av.open(media) as src, av.open(str(dest), "w", format="mp4" if mp4 else "matroska") as out:
        out.metadata.update(src.metadata)
        copies = {}
        for stream in src.streams:
            if stream.type in COPIED:
                copy = out.add_stream_from_template(stream)
                copy.metadata.update(stream.metadata)
                copy.disposition = stream.disposition
                copies[stream.index] = copy
        existing = len(src.streams.subtitles)
        origin_ms = round((src.start_time or 0) / av.time_base * 1000)
        pending = sorted(
            (item for i, track in enumerate(tracks)
             for item in _packets(_add_track(out, track, mp4, i == 0 and not existing), cues[i], origin_ms, mp4)),
            key=lambda item: item[0],
        )  # fmt: skip
        if src.chapters():
            out.set_chapters(src.chapters())
        queued = iter(pending)
        upcoming = next(queued, None)
        for packet in src.demux(*[src.streams[i] for i in copies]):
            if not packet.size:
                continue
            when = packet.dts if packet.dts is not None else packet.pts
            if when is not None:  # cues go in at their time among the original packets: interleaved as a muxer wants
                while upcoming is not None and upcoming[0] <= when * packet.time_base:
                    out.mux(upcoming[1])
                    upcoming = next(queued, None)
            packet.stream = copies[packet.stream.index]
            out.mux(packet)
        while upcoming is not None:
            out.mux(upcoming[1])
            upcoming = next(queued, None)
    return existing


def run(request: dict, events: Events) -> None:
    import av

    def work(job: dict) -> dict:
        media = job["job"]["media"]["path"]
        dest = Path(job["outputs"]["media"])
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            existing = mux(media, job["tracks"], tmp)
            os.replace(tmp, dest)
        except (av.FFmpegError, ValueError) as exc:  # ValueError: a stream the output container cannot hold
            raise StageFailure(f"ffmpeg could not mux the subtitles: {getattr(exc, 'strerror', None) or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        tags = [t["iso639_2"] for t in job["tracks"]]
        events.log(
            job["id"], f"{dest.name}: original streams copied, {existing} subtitle tracks kept, added {', '.join(tags)}"
        )
        return {"tracks": tags}

    for_each_job(request, events, work, workers=min(len(request["jobs"]), 4))


if __name__ == "__main__":
    main(run)
