"""The transcript page: <stem>.html, one self-contained file per job to review a transcript against its media.

Everything is inline (styles, script, the transcripts as JSON): no network, no CDN. The player plays the original
media through a relative link from the job folder (transcript times are media positions, so a clip's lines seek to
the right place); click a line to seek, the line being spoken is highlighted while it plays, a search box filters the
lines, a speaker timeline shows each speaker's turns for a diarized job, and translations are switchable. Transcript
text reaches the page only as JSON data set with textContent, never as markup. Standard library only.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
VIDEO = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")

STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.6em 1em;z-index:1}
h1{font-size:1.1em;margin:0 0 .4em}
video{max-height:40vh;max-width:100%;display:block}
audio{width:100%}
.bar{display:flex;gap:.6em;align-items:center;margin-top:.4em;flex-wrap:wrap}
#timeline{position:relative;height:auto;margin-top:.5em}
.track{position:relative;height:14px;margin:2px 0 2px 6em;background:#eee}
.track span.turn{position:absolute;top:0;height:100%;opacity:.85;cursor:pointer}
.track label{position:absolute;left:-6em;width:5.6em;top:-1px;font-size:12px;color:#333;overflow:hidden}
main{padding:.5em 1em 4em}
p.line{margin:.2em 0;padding:.2em .4em;border-left:4px solid transparent;cursor:pointer;border-radius:3px}
p.line:hover{background:#eef}
p.line.current{background:#fff3b0;border-left-color:#e0a800}
p.line.hidden{display:none}
.time{color:#888;font-variant-numeric:tabular-nums;margin-right:.5em;font-size:.85em}
.who{font-weight:600;margin-right:.4em}
mark{background:#ffe066}
"""

SCRIPT = """
const data = JSON.parse(document.getElementById('data').textContent);
const player = document.getElementById('player');
const lines = document.getElementById('lines');
const search = document.getElementById('search');
const choice = document.getElementById('language');
let shown = [];
function clock(t) {
  const s = Math.max(0, t), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, x = Math.floor(s % 60);
  return (h ? h + ':' + String(m).padStart(2, '0') : m) + ':' + String(x).padStart(2, '0');
}
function render(language) {
  const doc = data.documents.find(d => d.language === language) || data.documents[0];
  lines.textContent = '';
  shown = doc.segments.map((seg, i) => {
    const p = document.createElement('p');
    p.className = 'line';
    p.dataset.start = seg.start; p.dataset.end = seg.end; p.dataset.index = i;
    const time = document.createElement('span'); time.className = 'time'; time.textContent = clock(seg.start);
    p.appendChild(time);
    if (seg.speaker) {
      const who = document.createElement('span'); who.className = 'who'; who.textContent = seg.speaker;
      who.style.color = data.colours[seg.speaker] || '#555'; p.appendChild(who);
    }
    const text = document.createElement('span'); text.className = 'text'; text.textContent = seg.text;
    p.appendChild(text);
    p.addEventListener('click', () => seek(seg.start));
    lines.appendChild(p);
    return p;
  });
  filter();
}
function seek(t) {
  player.currentTime = t;
  const playing = player.play();
  if (playing && playing.catch) playing.catch(() => {});
}
function filter() {
  const q = search.value.trim().toLowerCase();
  for (const p of shown) {
    const text = p.querySelector('.text');
    const plain = text.textContent;
    text.textContent = plain;
    const at = q ? plain.toLowerCase().indexOf(q) : -1;
    p.classList.toggle('hidden', Boolean(q) && at < 0);
    if (at >= 0) {
      const mark = document.createElement('mark');
      mark.textContent = plain.slice(at, at + q.length);
      text.textContent = plain.slice(0, at);
      text.appendChild(mark);
      text.appendChild(document.createTextNode(plain.slice(at + q.length)));
    }
  }
}
function follow() {
  const t = player.currentTime;
  for (const p of shown) {
    const on = t >= +p.dataset.start && t < +p.dataset.end;
    if (on && !p.classList.contains('current')) p.scrollIntoView({block: 'nearest'});
    p.classList.toggle('current', on);
  }
}
function timeline() {
  const box = document.getElementById('timeline');
  const source = data.documents[0];
  const speakers = [...new Set(source.segments.filter(s => s.speaker).map(s => s.speaker))];
  const span = Math.max(data.end - data.start, 0.001);
  for (const who of speakers) {
    const track = document.createElement('div'); track.className = 'track'; track.dataset.speaker = who;
    const label = document.createElement('label'); label.textContent = who; track.appendChild(label);
    for (const seg of source.segments.filter(s => s.speaker === who)) {
      const turn = document.createElement('span'); turn.className = 'turn';
      turn.style.left = (100 * (seg.start - data.start) / span) + '%';
      turn.style.width = Math.max(0.2, 100 * (seg.end - seg.start) / span) + '%';
      turn.style.background = data.colours[who] || '#555';
      turn.title = who + ' ' + clock(seg.start) + '-' + clock(seg.end);
      turn.dataset.start = seg.start;
      turn.addEventListener('click', () => seek(seg.start));
      track.appendChild(turn);
    }
    box.appendChild(track);
  }
}
player.addEventListener('timeupdate', follow);
player.addEventListener('seeked', follow);
search.addEventListener('input', filter);
if (choice) choice.addEventListener('change', () => render(choice.value));
timeline();
render(data.documents[0].language);
"""


def page_html(stem: str, media: str, page_path: Path, documents: list[dict], clip: dict) -> str:
    """The page for a job: `documents` are (language, transcript document) as the outputs stage read them, the
    source first; `media` is the original file, linked relative to where the page is written."""
    speakers = list(dict.fromkeys(s["speaker"] for d in documents for s in d["segments"] if s.get("speaker")))
    data = {
        "start": clip["start"],
        "end": clip["end"],
        "colours": {who: COLOURS[i % len(COLOURS)] for i, who in enumerate(speakers)},
        "documents": [
            {
                "language": d["language"],
                "segments": [
                    {"start": s["start"], "end": s["end"], "text": s["text"].strip(), "speaker": s.get("speaker")}
                    for s in d["segments"]
                ],
            }
            for d in documents
        ],
    }
    link = os.path.relpath(media, page_path.parent)
    href = html.escape("/".join(link.split(os.sep)).replace("%", "%25").replace("#", "%23").replace("?", "%3F"))
    tag = "video" if Path(media).suffix.lower() in VIDEO else "audio"
    languages = [d["language"] for d in documents]
    picker = (
        '<label>Language <select id="language">'
        + "".join(f'<option value="{html.escape(code)}">{html.escape(code)}</option>' for code in languages)
        + "</select></label>"
        if len(languages) > 1
        else ""
    )
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")  # nothing in it can close the script
    return f"""<!DOCTYPE html>
<html lang="{html.escape(languages[0])}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; media-src 'self' file: blob:; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{html.escape(stem)}: transcript</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>{html.escape(stem)}</h1>
<{tag} id="player" controls preload="metadata" src="{href}"></{tag}>
<div class="bar">
<input id="search" type="search" placeholder="Search the transcript" size="30">
{picker}
<a href="{href}">{html.escape(Path(media).name)}</a>
</div>
<div id="timeline"></div>
</header>
<main id="lines"></main>
<script type="application/json" id="data">{payload}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
