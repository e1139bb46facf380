#!/usr/bin/env bash
# The step cache (`kiln build --cache`) on tests/build/cached.json under TCG, measured side by
# side in one run:
#   1. a cold build without the cache (--no-cache): the baseline;
#   2. a cold build with the cache, which saves the VM after Connect and each provisioner
#      (what saving costs: 2 against 1);
#   3. a rebuild after editing the last provisioner's script;
#   4. a rebuild after editing the first provisioner (cached.json's inline, via a copy);
#   5. another recipe on the same base image and builder options (a different output and
#      provisioners): how long until its first provisioner starts.
# Prints each time and the ratios against the cold build.
#   benches/step-cache.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
kiln=$PWD/target/debug/kiln
base=$(bash tests/fixtures/debian-image.sh)
recipe=$PWD/tests/build/cached.json

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export XDG_STATE_HOME=$work/state XDG_CACHE_HOME=$work/cache XDG_DATA_HOME=$work/data
echo "upload v1" > upload.txt
last() {
  printf '#!/bin/sh\nset -eu\necho %s > /root/last\ncp /tmp/upload.txt /root/upload.txt\n' "$1" > last.sh
}
last v1
cp "$recipe" first-edited.json
sed -i "s/echo one > \/root\/one/echo ONE > \/root\/one/" first-edited.json
sed -e 's/"output-cached"/"output-other"/' -e 's/"cached.qcow2"/"other.qcow2"/' \
    -e "s/echo one > \/root\/one/echo other > \/root\/other/" "$recipe" > other.json

declare -A took
build() { # name, recipe, extra args…
  local name=$1 r=$2; shift 2
  local start end
  start=$(date +%s.%N)
  "$kiln" build --force "$@" -var "base_image=$base" -var "work=$work" "$r" > "$name.log" 2>&1 \
    || { echo "the $name build failed; its log:" >&2; tail -30 "$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  took[$name]=$(echo "$end - $start" | bc)
  printf '%-28s %7.1f s   (%s)\n' "$name" "${took[$name]}" "$(steps "$name.log")"
}
# The long steps of a build log, and the time its snapshots took in all.
steps() {
  local saves
  saves=$(grep -o '[0-9.]* s in all' "$1" | awk '{s += $1} END {printf "%.1f", s}')
  grep -E '^    (Boot|Connect|Provision [0-9/]*: [a-z-]*|Shut down|Compact) done in' "$1" \
    | sed -E 's/^    //; s/: [a-z-]+ done in/ done in/; s/ done in / /' | paste -sd, - \
    | sed "s/,/, /g; s/\$/; snapshots ${saves} s/"
}
build no-cache "$recipe" --no-cache
build cold-with-cache "$recipe" --cache
last v2
build edit-last "$recipe" --cache
build edit-first first-edited.json --cache
# The other recipe: the time from start until its first provisioner starts.
start=$(date +%s.%N)
"$kiln" build --force --cache -var "base_image=$base" -var "work=$work" other.json 2>&1 | while IFS= read -r line; do
  echo "$line" >> other.log
  if [[ $line == "==> Provision 1/3"* ]]; then
    printf '%-28s %7.1f s\n' "other recipe: 1st provisioner" "$(echo "$(date +%s.%N) - $start" | bc)"
  fi
done
ratio() { echo "scale=3; $1 / $2" | bc; }
saves=$(grep -o '[0-9.]* s in all' cold-with-cache.log | awk '{s += $1} END {printf "%.1f", s}')
echo "snapshots in the cold build with the cache: ${saves} s = $(ratio "$saves" "${took[cold-with-cache]}") of it"
echo "cold with cache / cold without (boot times vary run to run under TCG): $(ratio "${took[cold-with-cache]}" "${took[no-cache]}")"
echo "edit last / cold:  $(ratio "${took[edit-last]}" "${took[no-cache]}")"
echo "edit first / cold: $(ratio "${took[edit-first]}" "${took[no-cache]}")"
grep -h "step cache: saved" cold-with-cache.log | sed 's/^/  /'
echo "cache: $(du -sh "$XDG_CACHE_HOME/kiln/steps" | cut -f1)"
