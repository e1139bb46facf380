#!/usr/bin/env bash
# The step cache (`kiln build --cache`) under TCG on the Debian test image, measured side by
# side in one run, on two recipe forms:
#   kiln-seed: tests/build/cached.json (kiln's seed, three provisioners);
#   article:   benches/article.json, the seed article's form (its own seed.img and -drive for
#              the output disk), with a second provisioner added.
# For each form:
#   1. a cold build without the cache (--no-cache): the baseline;
#   2. a cold build with the cache, which saves the VM after Connect and each provisioner
#      (the snapshots' own time is summed from the log);
#   3. a rebuild after editing the last provisioner;
#   4. a rebuild after editing the first provisioner;
# and, for kiln-seed, another recipe on the same base image and builder options (another
# output and provisioners): how long until its first provisioner starts.
# Prints each time with its long steps, and the ratios against the cold build.
#   benches/step-cache.sh [kiln-seed|article|both]
set -euo pipefail
cd "$(dirname "$0")/.."
forms=${1:-both}
cargo build --quiet
kiln=$PWD/target/debug/kiln
base=$(bash tests/fixtures/debian-image.sh)
sha=$(sha256sum "$base" | cut -d' ' -f1)
repo=$PWD

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export XDG_STATE_HOME=$work/state XDG_CACHE_HOME=$work/cache XDG_DATA_HOME=$work/data

# The long steps of a build log, and the time its snapshots took in all.
steps() {
  local saves
  saves=$(grep -o '[0-9.]* s in all' "$1" | awk '{s += $1} END {printf "%.1f", s}')
  grep -E '^    (Boot|Connect|Provision [0-9/]*: [a-z-]*|Shut down|Compact) done in' "$1" \
    | sed -E 's/^    //; s/: [a-z-]+ done in/ done in/; s/ done in / /' | paste -sd, - \
    | sed "s/,/, /g; s/\$/; snapshots ${saves} s/"
}
declare -A took
build() { # name, recipe, args…
  local name=$1 r=$2; shift 2
  local start end
  start=$(date +%s.%N)
  "$kiln" build --force "$@" "$r" > "$name.log" 2>&1 \
    || { echo "the $name build failed; its log:" >&2; tail -30 "$name.log" >&2; exit 1; }
  end=$(date +%s.%N)
  took[$name]=$(echo "$end - $start" | bc)
  printf '%-22s %6.1f s   (%s)\n' "$name" "${took[$name]}" "$(steps "$name.log")"
}
ratio() { echo "scale=3; $1 / $2" | bc; }
report() { # form
  local f=$1 saves
  saves=$(grep -o '[0-9.]* s in all' "$f-cold-cache.log" | awk '{s += $1} END {printf "%.1f", s}')
  echo "$f: snapshots took ${saves} s = $(ratio "$saves" "${took[$f-cold-cache]}") of the cold build with the cache"
  echo "$f: cold with cache / cold without: $(ratio "${took[$f-cold-cache]}" "${took[$f-no-cache]}") (boot times vary run to run under TCG)"
  echo "$f: edit last / cold:  $(ratio "${took[$f-edit-last]}" "${took[$f-no-cache]}")"
  echo "$f: edit first / cold: $(ratio "${took[$f-edit-first]}" "${took[$f-no-cache]}")"
}

if [[ $forms == both || $forms == kiln-seed ]]; then
  recipe=$repo/tests/build/cached.json
  echo "upload v1" > upload.txt
  last() { printf '#!/bin/sh\nset -eu\necho %s > /root/last\ncp /tmp/upload.txt /root/upload.txt\n' "$1" > last.sh; }
  last v1
  sed "s/echo one > \/root\/one/echo ONE > \/root\/one/" "$recipe" > first-edited.json
  sed -e 's/"output-cached"/"output-other"/' -e 's/"cached.qcow2"/"other.qcow2"/' \
      -e "s/echo one > \/root\/one/echo other > \/root\/other/" "$recipe" > other.json
  vars=(-var "base_image=$base" -var "work=$work")
  build kiln-seed-no-cache "$recipe" --no-cache "${vars[@]}"
  build kiln-seed-cold-cache "$recipe" --cache "${vars[@]}"
  last v2
  build kiln-seed-edit-last "$recipe" --cache "${vars[@]}"
  build kiln-seed-edit-first first-edited.json --cache "${vars[@]}"
  start=$(date +%s.%N)
  "$kiln" build --force --cache "${vars[@]}" other.json 2>&1 | while IFS= read -r line; do
    echo "$line" >> other.log
    if [[ $line == "==> Provision 1/3"* ]]; then
      printf '%-22s %6.1f s\n' "other recipe: reaches its 1st provisioner after" "$(echo "$(date +%s.%N) - $start" | bc)"
    fi
  done
  report kiln-seed
fi

if [[ $forms == both || $forms == article ]]; then
  ssh-keygen -q -t ed25519 -N '' -f key
  printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat key.pub)" > user-data
  "$kiln" seed user-data -o seed.img >/dev/null
  vars=(-var "base_image=$base" -var "base_sha256=$sha" -var "ssh_private_key_file=$work/key")
  with_last() { # tag, first-provisioner marker → article-TAG.json
    python3 - "$repo/benches/article.json" "$1" "$2" > "article-$1.json" <<'EOF'
import json, sys
recipe = json.load(open(sys.argv[1]))
first = recipe["provisioners"][0]
first["inline"][-1] = "echo %s > /root/marker" % sys.argv[3]
recipe["provisioners"].append({
    "type": "shell",
    "execute_command": first["execute_command"],
    "inline": ["echo %s > /root/last" % sys.argv[2]],
})
print(json.dumps(recipe, indent=2))
EOF
  }
  with_last v1 provisioned
  with_last v2 provisioned
  with_last v2-first reprovisioned
  build article-no-cache article-v1.json --no-cache "${vars[@]}"
  build article-cold-cache article-v1.json --cache "${vars[@]}"
  build article-edit-last article-v2.json --cache "${vars[@]}"
  build article-edit-first article-v2-first.json --cache "${vars[@]}"
  report article
fi
echo "cache: $(du -sh "$XDG_CACHE_HOME/kiln/steps" | cut -f1)"
