#!/usr/bin/env bash
# Installs the system programs the pipeline shells out to, only when one is missing:
#   ffmpeg/ffprobe (decode, mix, remux), sox (qwen-tts warns without it), rubberband (time-stretch),
#   espeak-ng (only media_samples/make_sample.py uses it, to regenerate the sample narration),
#   chromium (the studio's browser tests drive it with Playwright; `playwright install` is not needed),
#   fonts-wqy-microhei (1.6 MB: CJK and Hangul glyphs, so the studio's page and docs/studio.png show
#   Japanese, Chinese and Korean text in Chromium instead of empty boxes).
# Debian/Ubuntu (apt-get) is automated; elsewhere the script names what to install and fails.
set -euo pipefail

declare -A PACKAGE_FOR=([ffmpeg]=ffmpeg [ffprobe]=ffmpeg [sox]=sox [rubberband]=rubberband-cli [espeak-ng]=espeak-ng
  [chromium]=chromium)
missing=()
for program in "${!PACKAGE_FOR[@]}"; do
  command -v "$program" >/dev/null 2>&1 || missing+=("${PACKAGE_FOR[$program]}")
done
for lang in ja ko zh; do  # a font for each CJK script the studio shows (fontconfig comes with chromium)
  [ -n "$(fc-list ":lang=$lang" 2>/dev/null)" ] || missing+=(fonts-wqy-microhei)
done
[ ${#missing[@]} -eq 0 ] && exit 0

packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system packages: ${packages}- install them with your package manager" >&2
  exit 1
fi
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: need root (or sudo) to apt-get install ${packages}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
echo "installing system packages: ${packages}"
"${sudo_cmd[@]}" apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends $packages >/dev/null
