"""Decoding controls as a user sets them: checked at prepare (one line, exit 2), recorded in job.json, applied by the
real tiny.en (a hotword list and a prompt that name made-up words change the transcript of espeak-ng speech saying
them; numeral suppression spells numbers out), controls the MLX backend lacks noted, unset controls changing
nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from offline_speech.decoding import DecodingError, decoding_controls
from support.shell import shim

NAMES = "Please welcome our guest speaker today, doctor Zorblatt Quenfield, from the Varnholm institute."
NUMBERS = "I paid 25 dollars for 3 books in 2019, about 40 percent less."


def speak(path: Path, text: str) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return path


def prepare(out: Path, cache: Path, media: Path, *args: str, code: int = 0, **env: str):
    return shim(
        "prepare-job.sh",
        "--media",
        str(media),
        "--asr-model",
        "tiny.en",
        "-s",
        "en",
        "--no-align",
        "--out-dir",
        str(out),
        *args,
        cache=cache,
        code=code,
        **env,
    )


def job_json(out: Path, proc) -> dict:
    return json.loads((out / proc.stdout.split()[-1] / "job.json").read_text())


def test_controls_are_checked_and_only_what_is_set_is_recorded():
    assert decoding_controls() == {}
    assert decoding_controls(hotwords=" Zorblatt ,Quenfield,, ", beam_size=3, temperature="0,0.4") == {
        "hotwords": "Zorblatt, Quenfield",
        "beam_size": 3,
        "temperature": [0.0, 0.4],
    }
    assert decoding_controls(device="auto", compute_type="default") == {}  # the defaults, spelled out
    for bad in (
        {"beam_size": 0},
        {"temperature": "0.5,0.2"},
        {"temperature": "hot"},
        {"vad_onset": 1.5},
        {"vad_onset": 0.3, "vad_offset": 0.6},
        {"chunk_size": 45},
        {"compute_type": "int4"},
        {"device": "tpu"},
        {"initial_prompt": "  "},
    ):
        with pytest.raises(DecodingError):
            decoding_controls(**bad)


def test_prepare_refuses_bad_values_in_one_line_and_records_good_ones(provisioned, tmp_path):
    out = tmp_path / "out"
    clip = speak(tmp_path / "names.wav", NAMES)
    for args, said in (
        (("--beam-size", "0"), "--beam-size 0: between 1 and 64"),
        (("--temperature", "2"), "--temperature '2'"),
        (("--vad-onset", "0.2", "--vad-offset", "0.4"), "--vad-offset 0.4 is above --vad-onset 0.2"),
        (("--device", "tpu"), "--device tpu: choose auto, cpu, cuda"),
    ):
        proc = prepare(out, provisioned, clip, *args, code=2)
        assert proc.stderr.startswith("error: ") and said in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not out.exists()  # nothing written
    plain = job_json(out, prepare(out, provisioned, clip))
    assert plain["decoding"] == {} and plain["schema"] == 4
    tuned = job_json(
        out,
        prepare(
            out,
            provisioned,
            clip,
            "--hotwords",
            "Zorblatt,Quenfield",
            "--beam-size",
            "3",
            "--no-condition-on-previous-text",
            "--device",
            "cpu",
            "--compute-type",
            "int8",
        ),
    )
    assert tuned["decoding"] == {
        "hotwords": "Zorblatt, Quenfield",
        "beam_size": 3,
        "condition_on_previous_text": False,
        "device": "cpu",
        "compute_type": "int8",
    }
    mlx = prepare(
        out,
        provisioned,
        clip,
        "--backend",
        "mlx",
        "--hotwords",
        "X",
        "--initial-prompt",
        "Y",
        code=None,
        platform="darwin-arm64",
    )
    assert "note: the mlx backend ignores --hotwords (mlx-whisper has no such control)" in mlx.stderr, mlx.stderr


def test_hotwords_a_prompt_and_numeral_suppression_change_what_tiny_en_writes(provisioned, tmp_path):
    out = tmp_path / "out"
    names, numbers = speak(tmp_path / "names.wav", NAMES), speak(tmp_path / "numbers.wav", NUMBERS)
    jobs = {
        "plain": prepare(out, provisioned, names),
        "hotwords": prepare(out, provisioned, names, "--hotwords", "Zorblatt,Quenfield,Varnholm"),
        "prompt": prepare(out, provisioned, names, "--initial-prompt", "Doctor Zorblatt Quenfield of Varnholm"),
        "digits": prepare(out, provisioned, numbers),
        "spelled": prepare(out, provisioned, numbers, "--suppress-numerals"),
    }
    ids = {name: proc.stdout.split()[-1] for name, proc in jobs.items()}
    shim(
        "run-pipeline.sh",
        *[a for i in ids.values() for a in ("-j", i)],
        "--out-dir",
        str(out),
        cache=provisioned,
        netns=True,
    )
    text = {
        name: " ".join(
            (out / i / f"{'numbers' if name in ('digits', 'spelled') else 'names'}.en.txt").read_text().split()
        )
        for name, i in ids.items()
    }
    assert "Zorblatt" not in text["plain"] and "Quenfield" not in text["plain"], text["plain"]
    assert "Zorblatt" in text["hotwords"] and "Quenfield" in text["hotwords"], text["hotwords"]
    assert "Varnholm" in text["prompt"] and "Zorblatt" in text["prompt"], text["prompt"]
    assert any(c.isdigit() for c in text["digits"]), text["digits"]
    assert not any(c.isdigit() for c in text["spelled"]) and "twenty" in text["spelled"].lower(), text["spelled"]
    log = (out / ids["hotwords"] / "logs" / "asr.log").read_text()
    assert 'decoding controls: {"hotwords": "Zorblatt, Quenfield, Varnholm"}' in log
    assert "decoding controls" not in (out / ids["plain"] / "logs" / "asr.log").read_text()


def test_a_hand_edited_control_is_one_line_naming_job_json(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = prepare(out, provisioned, speak(tmp_path / "names.wav", NAMES)).stdout.split()[-1]
    path = out / job_id / "job.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps(doc | {"decoding": {"beam_size": "five"}}))
    proc = shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), cache=provisioned, code=2)
    assert f"{path}: decoding: 'beam_size' is str" in proc.stderr and "Traceback" not in proc.stderr
