"""resemblyzer's trained speaker encoder as a pyannote embedding `Model`, for the real-weight test repo that
tiny_diarization.py builds. Runs in venv/whisperx (torch, torchaudio, pyannote.audio).

pyannote imports a checkpoint's class by the module name recorded in it. The builder records this class as
`tests.support.resemblyzer_embedding`, its path from the project root, and every process that loads the repo runs
in the project root with the project's own stage environment: the runner starts each stage as `python -m ...` with
the project root as its working directory, which Python puts first on sys.path (the tests and the benchmark start
theirs the same way). So the real-weight repo goes through run-pipeline.sh unchanged, with nothing added to the
stage environment for it. A user's own pyannote architecture would be installed into venv/whisperx instead.
"""

from __future__ import annotations

import torch
import torchaudio
from pyannote.audio import Model

SAMPLE_RATE = 16000


class ResemblyzerEmbedding(Model):
    """resemblyzer's VoiceEncoder (3-layer LSTM, 256-d): mel power spectrogram (40 bands, 25/10 ms, as librosa
    computes it for resemblyzer) of the utterance normalised to -30 dBFS, 1.6 s partials with 50 % overlap, each
    embedded and L2-normed, averaged and L2-normed again. `weights` (pyannote's per-frame speaker activity) keep
    only the frames where the speaker is active, as resemblyzer's own VAD trimming would."""

    PARTIAL = 160  # frames: 1.6 s

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1, task=None):
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=400,
            hop_length=160,
            n_mels=40,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
            pad_mode="constant",
        )
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)

    @property
    def dimension(self) -> int:
        return 256

    def _embed(self, frames: torch.Tensor) -> torch.Tensor:
        if len(frames) == 0:
            return torch.full((256,), float("nan"))  # pyannote drops NaN embeddings (a speaker silent in a chunk)
        if len(frames) <= self.PARTIAL:
            partials = frames[None]
        else:
            starts = list(range(0, len(frames) - self.PARTIAL + 1, self.PARTIAL // 2))
            if starts[-1] + self.PARTIAL < len(frames):
                starts.append(len(frames) - self.PARTIAL)
            partials = torch.stack([frames[s : s + self.PARTIAL] for s in starts])
        _, (hidden, _) = self.lstm(partials)
        raw = torch.relu(self.linear(hidden[-1]))
        raw = raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)
        mean = raw.mean(0)
        return mean / mean.norm().clamp_min(1e-8)

    def forward(self, waveforms: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        out = []
        for i, wav in enumerate(waveforms[:, 0]):
            rms = wav.pow(2).mean().sqrt()
            if rms > 0:
                wav = wav * (10 ** (-30 / 20) / rms)
            frames = self.mel(wav).T  # (frames, 40)
            if weights is not None:
                w = torch.nn.functional.interpolate(weights[i][None, None].float(), size=len(frames), mode="nearest")[
                    0, 0
                ]
                frames = frames[w > 0.5]
            out.append(self._embed(frames))
        return torch.stack(out)
