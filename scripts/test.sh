#!/usr/bin/env bash
# The README's test command: sets up everything the tests need from nothing, then runs pytest.
#   ./scripts/test.sh [pytest args]
# Needs root for the Debian packages it installs when missing and for the network/mount namespaces
# (unshare) the tests use to prove offline runs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

missing=()
command -v unshare >/dev/null || missing+=(util-linux)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v strace >/dev/null || missing+=(strace)
[ -x /usr/sbin/slurmctld ] || missing+=(slurm-wlm)  # a real one-node Slurm for the cluster tests
[ -x /usr/sbin/munged ] || missing+=(munge)
command -v chromium >/dev/null || missing+=(chromium)  # the transcript page is checked in a real browser
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

./venv-setup core whisperx translation mlx

set +e
venv/core/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure (a suite that runs nothing proves nothing)" >&2
  exit 1
fi
exit "$rc"
