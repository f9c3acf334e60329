"""Each benchmark's --quick run, as a subprocess: it exits 0 and prints every figure it exists to print, each a
number of the right kind. The figures themselves are not judged here (a small, shared CI machine); that they are
printed at all is what keeps a benchmark from rotting on main unnoticed."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support import ROOT

N = r"(\d+(?:\.\d+)?)"  # one figure
ANY = r"\[.*\]"  # the per-run values after a median


def positive(*values: float) -> bool:
    return all(v > 0 for v in values)


# Per benchmark: (a line of its output, as a regex whose groups are its figures; what must hold of them).
PROVISION = [
    (rf"^\[{mode}\] {line}", check)
    for mode in ("xet", "http")
    for line, check in [
        (
            rf"catalog selection --all \(linux-x86_64\): {N} entries, "
            rf"{N} MB the loaders need \({N} MB of it Xet-backed\)$",
            (lambda n, mb, x: n > 0 and mb > 0 and x > 0)
            if mode == "xet"
            else (lambda n, mb, x: n > 0 and mb > 0 and x == 0),
        ),
        (rf"full --all provisioning: {N} s$", positive),
        (
            rf"all-cached --all check: {N} s best, {N} s median, (\d+) HTTP requests",
            lambda b, m, r: 0 < b <= m and r == 0,
        ),
        (rf"plain-HTTP bytes fetched / needed over plain HTTP: {N} \((\d+) / (\d+)\)", lambda r, s, n: r == 1),
        (rf"throughput: cache-models {N} MB/s .*, bare snapshot_download {N} MB/s", positive),
        (
            rf"throughput ratio: {N} median of (\d+) rounds .*; best / best {N};",
            lambda r, n, b: r > 0 and n == 2 and b > 0,
        ),
    ]
] + [
    (r"^\[xet\] plain-HTTP bytes of Xet-backed files: (\d+) ", lambda n: n == 0),
    # 4. bytes a Xet download fetches again (through the hub's HTTP CAS): the fraction, then the bytes behind it
    *[
        (
            rf"^\[xet\] {what}: bytes fetched / file size = {N} \(target <= 0.15\) (?:MEETS TARGET|BELOW TARGET[^;]*); "
            rf"(\d+) B, {detail}\(file of {N} MB; cache-models, hf-xet \S+ from the test hub's Xet CAS over HTTP\)$",
            check,
        )
        for what, detail, check in [
            (
                "--update across commits sharing >= 90% of chunks",
                rf"{N}% of the new file in chunks the old one has ",
                lambda fraction, sent, shared, mb: 0 < fraction <= 2 and sent > 0 and shared >= 90 and mb > 0,
            ),
            (
                r"re-run after kill -9 at ~90% of a Xet download",
                r"killed after (\d+)% sent ",
                lambda fraction, sent, killed, mb: 0 < fraction <= 2 and sent > 0 and killed >= 90 and mb > 0,
            ),
        ]
    ],
]
PIPELINE = [
    (rf"^clip: samples/speech-en.opus, {N} s, reference (\d+) words; 1 reps", positive),
    (
        rf"^1\. one job: run-pipeline.sh {N} s {ANY} ÷ "
        rf"bare batched faster-whisper {N} s {ANY} = {N} \(target <= 1.25\)",
        positive,
    ),
    (rf"^   for information: ÷ bare plain model.transcribe {N} s {ANY} = {N}$", positive),
    (rf"^2\. two jobs: one call {N} s {ANY} ÷ two separate calls {N} s {ANY} = {N} \(target <= 0.5\)", positive),
    (rf"^3\. asr real-time factor: {N} per job .*, {N} transcribe call only .*; model load {N} s", positive),
    (
        rf"^   stages of job \S+: demux {N} s, asr {N} s, align {N} s, outputs {N} s; run-pipeline.sh wall {N} s$",
        lambda demux, asr, align, outputs, wall: asr > 0 and wall > 0 and min(demux, align, outputs) >= 0,
    ),
    (
        rf"^4\. WER vs .*: pipeline {N}%; for information bare batched {N}%, bare plain {N}%$",
        lambda *wers: all(0 <= w <= 100 for w in wers),
    ),
    (
        rf"^   with --hotwords naming its {N} rare words \(.*\): WER {N}% \(without: {N}%\)$",
        lambda words, with_, without: words > 0 and 0 <= with_ <= 100 and 0 <= without <= 100,
    ),
    (rf"^benchmark took {N} s$", positive),
]
TRANSLATE = [
    (r"^model: tiny NLLB trained by tests/support/tiny_translators.py; (\d+) segments per pass", positive),
    *[
        (rf"^  {route} .* {N} segments/s  \({N} s; load {N} s\)$", lambda speed, wall, load: speed > 0 and load >= 0)
        for route in (
            "nllb ctranslate2",
            "nllb transformers",
            r"indictrans2 en-indic \(en->hi\)",
            r"indictrans2 indic-en \(hi->en\)",
            r"indictrans2 indic-indic \(hi->ta\)",
        )
    ],
    (rf"^ctranslate2 int8 / transformers NLLB speed on the tiny model: {N}x", positive),
    (r"^identical output: (yes); equal to the trained sentences: (True)$", None),
    *[
        (rf"^  {route}: reproduces the trained sentences: (True)$", None)
        for route in (
            r"indictrans2 en-indic \(en->hi\)",
            r"indictrans2 indic-en \(hi->en\)",
            r"indictrans2 indic-indic \(hi->ta\)",
        )
    ],
    (
        rf"^--quick: a small shape \(not real size, {N} M parameters, random weights; (\d+) segments x (\d+) tokens",
        positive,
    ),
    (rf"^  ctranslate2 int8 {N} segments/s, transformers float32 {N} segments/s: {N}x", positive),
]


MEDIA = [
    (rf"^import av: {N} s", positive),
    *[
        (
            rf"^{ext} +{N}s \({N}s\) +{N}s \({N}s\) +{N} +{N}s \({N}s\) +{N}s \({N}s\) +{N} +(-?\d+) +(-?\d+)$",
            lambda *v: all(x > 0 for x in v[:10]) and v[10] == 0,
        )
        for ext in ("opus", "mp4", "mkv", "wav", "mp3")
    ],
]
BUNDLE = [
    (rf"^bundle of {N} MB, (\d+) paired rounds", positive),
    (
        rf"^fixed cost of one run, in every time of ours below \(process start \+ planning: --export --dry-run\): "
        rf"{N} s$",
        positive,
    ),
    (r"^into the page cache \(each side timed until it exits", None),
    (r"^to disk \(each side timed until what it wrote is on disk", None),
    (rf"^  export throughput / plain tar: {N} \(ours {N} MB/s", positive),
    (rf"^  export hashing every byte \(no verified index\) / plain tar: {N} \(ours {N} MB/s", positive),
    (rf"^  import throughput / plain tar: {N} \(ours {N} MB/s", positive),
    (
        rf"^  the most any tool that hashes every byte on one core can reach: plain tar -x / sha256 of the files "
        rf"alone: {N} \(sha256 {N} MB/s\)$",
        positive,
    ),
    *[
        (rf"^Ctrl-C to exit, {how}: {N} s median of (\d+) {ANY} \(target <= 1.5 s\)$", positive)
        for how in ("over plain HTTP", "through Xet")
    ],
    *[
        (
            rf"^bytes fetched after a kill at 90 %, {how} / file size: {N} \(file of {N} MB; target <= 0.15\)$",
            lambda fraction, mb: 0 <= fraction <= 1 and mb > 0,
        )
        for how in ("over plain HTTP", "through Xet")
    ],
]

SPEAKERS = [
    (rf"^audio: {N} s, (\d+) turns, (\d+) voices, (\d+) enrolled samples; named \['anna', 'ravi'\]", positive),
    (
        rf"^1\. diarize \+ naming .*: {N} s per audio minute; "
        rf"bare whisperX DiarizationPipeline: {N} s per audio minute; "
        rf"median paired ratio {N} over (\d+) rounds",
        positive,
    ),
    (
        rf"^2\. model loads in one stage run of (\d+) jobs: (\d+) \(target 1\); load {N} s",
        lambda jobs, loads, s: loads == 1,
    ),
    (rf"^3\. enrolment \(decode \+ embed\) per sample: {N} s in a fresh stage's first job", positive),
]


def run_quick(script: str) -> str:
    """scripts/SCRIPT --quick with the tests' Python (the core venv); its stdout, after asserting exit 0."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


CLUSTER = [
    (
        rf"^1\. prepare a batch of {N} media in one call: {N} ms per file ÷ one prepare-job\.sh call per file "
        rf"\({N} calls\): {N} ms = {N} \(target <= 0\.1\) .*; beyond probing and hashing \({N} ms\): -?{N} ms",
        None,
    ),
    (
        rf"^2\. {N} jobs in one run-pipeline\.sh -b: {N} s wall, asr transcription {N} s; beyond it per job: (-?{N}) s "
        rf"\(target <= 0\.1\) .*; asr model loads: \[1\]$",
        None,
    ),
    (
        rf"^3\. {N} jobs through a 2-task Slurm array: {N} s ÷ one local run-pipeline\.sh -b: {N} s = {N} "
        rf"\(target <= 1\.15\) .*; 4/4 done; asr model loads per task: \[1, 1\]$",
        None,
    ),
]


@pytest.mark.parametrize(
    ("script", "lines"),
    [
        ("bench_provision.py", PROVISION),
        ("bench_pipeline.py", PIPELINE),
        ("bench_translate.py", TRANSLATE),
        ("bench_media.py", MEDIA),
        ("bench_bundle.py", BUNDLE),
        ("bench_speakers.py", SPEAKERS),
        ("bench_cluster.py", CLUSTER),
    ],
)
def test_quick_run_prints_every_figure(script, lines):
    out = run_quick(script)
    for pattern, check in lines:
        match = re.search(pattern, out, re.MULTILINE)
        assert match, f"no line matching {pattern!r} in:\n{out}"
        if check is not None:  # None: the line itself, with its words, is the figure
            values = [float(g) for g in match.groups()]
            assert check(*values), f"{match.group(0)!r}: figures {values}"
