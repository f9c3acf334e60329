"""How the ffmpeg CLI (the tests' reference, not a dependency) makes each container from [a small picture, the
speech clip]: stereo, so demux downmixes. Shared by tests/test_media.py and scripts/bench_media.py."""

PICTURE = ["-map", "0:v", "-c:v", "libx264", "-pix_fmt", "yuv420p"]
CONTAINERS = {
    "opus": ["-map", "1:a", "-ac", "2", "-c:a", "libopus", "-b:a", "48k"],
    "mp4": [*PICTURE, "-map", "1:a", "-ac", "2", "-c:a", "aac", "-b:a", "64k"],
    "mkv": [*PICTURE, "-map", "1:a", "-ac", "2", "-c:a", "aac", "-b:a", "64k"],
    "wav": ["-map", "1:a", "-ac", "2", "-ar", "44100"],
    "mp3": ["-map", "1:a", "-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "96k"],
}
