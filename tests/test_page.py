"""The transcript page (<stem>.html) in a real headless Chromium with the network off (tests/support/browser.py run
inside `unshare -n`): it plays the job's own media, clicking a line seeks the player there and marks the line being
spoken, search filters the lines, translations switch, a diarized job's timeline shows each speaker's turns, and
transcript text stays text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from offline_speech.stages.page import page_html
from support import ROOT
from support.sample import CLIP
from support.shell import shim

BROWSER = ROOT / "tests" / "support" / "browser.py"


def browse(page: Path, *args: str) -> dict:
    """The browser script's findings, run with no network but loopback (chromedriver listens there)."""
    script = f"ip link set lo up && exec {sys.executable} {BROWSER} {page} {' '.join(args)}"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_a_job_s_page_plays_its_media_and_seeks_offline(provisioned, tmp_path):
    out = tmp_path / "out"
    job_id = shim(
        "prepare-job.sh",
        "--media",
        str(CLIP),
        "--asr-model",
        "tiny.en",
        "-s",
        "en",
        "--no-align",
        "--end-time",
        "20",
        "--out-dir",
        str(out),
        cache=provisioned,
    ).stdout.split()[-1]
    run = shim("run-pipeline.sh", "-j", job_id, "--out-dir", str(out), cache=provisioned, netns=True)
    page = out / job_id / "speech-en.html"
    assert str(page) in run.stdout
    doc = json.loads((out / job_id / "speech-en.en.json").read_text())
    seen = browse(page, "--click", "2", "--search", "river")
    assert len(seen["lines"]) == len(doc["segments"]) >= 3
    assert all(line.endswith(s["text"].strip()) for line, s in zip(seen["lines"], doc["segments"])), seen["lines"]
    assert seen["media_error"] is None and abs(seen["media_duration"] - 75.3) < 0.5  # the clip's own media plays
    assert abs(seen["current_time"] - doc["segments"][2]["start"]) < 1.5
    assert seen["current_lines"] == [seen["lines"][2]]
    assert seen["visible_after_search"] and all("river" in line.lower() for line in seen["visible_after_search"])
    assert seen["marks"] and all(m.lower() == "river" for m in seen["marks"])
    assert seen["resources"] == [] and seen["console_errors"] == []  # nothing fetched: everything is inline
    assert "http" not in page.read_text().replace("http-equiv", "")


def test_speakers_have_a_timeline_translations_switch_and_text_stays_text(tmp_path):
    def seg(start: float, end: float, text: str, who: str) -> dict:
        return {"start": start, "end": end, "text": text, "speaker": who}

    source = [
        seg(1.0, 4.0, "Good morning, everyone.", "ANNA"),
        seg(4.5, 8.0, "Morning! </script><img src=x onerror=alert(1)>", "RAVI"),
        seg(9.0, 12.0, "Let us begin with the budget.", "ANNA"),
    ]
    hindi = [dict(s, text=t) for s, t in zip(source, ("सुप्रभात, सभी को।", "सुप्रभात!", "बजट से शुरू करते हैं।"))]
    page = tmp_path / "meeting.html"
    documents = [{"language": "en", "segments": source}, {"language": "hi", "segments": hindi}]
    page.write_text(page_html("meeting", str(CLIP), page, documents, {"start": 0.0, "end": 15.0}))
    seen = browse(page, "--language", "hi", "--click", "2")
    assert {t["speaker"]: t["turns"] for t in seen["tracks"]} == {"ANNA": [1.0, 9.0], "RAVI": [4.5]}
    assert "</script><img src=x onerror=alert(1)>" in seen["lines"][1]  # shown as text, no element made of it
    assert [line.endswith(s["text"]) for line, s in zip(seen["lines_after_language"], hindi)] == [True] * 3
    assert "ANNA" in seen["lines_after_language"][0]
    assert seen["console_errors"] == [] and abs(seen["current_time"] - 9.0) < 1.5
