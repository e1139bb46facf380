#!/usr/bin/env bash
# Renders assets/kiln.svg to the PNG sizes desktops use (assets/icons/kiln-SIZE.png).
# Run after editing the SVG, and commit the PNGs. Needs rsvg-convert (apt-get install librsvg2-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rsvg-convert >/dev/null || { echo "icons.sh: apt-get install librsvg2-bin" >&2; exit 1; }
mkdir -p assets/icons
for size in 16 32 48 64 128 256; do
  rsvg-convert --width "$size" --height "$size" assets/kiln.svg --output "assets/icons/kiln-$size.png"
done
ls -l assets/icons
