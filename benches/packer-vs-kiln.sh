#!/usr/bin/env bash
# kiln against Packer 1.6.6 (Debian's package, qemu builder) on the same recipe file
# (benches/article.json), alternating runs, on the Debian test image. Prints each run, then
# the medians and the ratios.   RUNS=3 benches/packer-vs-kiln.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}

command -v packer >/dev/null || { apt-get update -qq && apt-get install -y -qq packer >/dev/null; }
cargo build --release --quiet
kiln=$PWD/target/release/kiln
recipe=$PWD/benches/article.json
base=$(bash tests/fixtures/debian-image.sh)
sha=$(sha256sum "$base" | cut -d' ' -f1)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
ssh-keygen -q -t ed25519 -N '' -f key
printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat key.pub)" > user-data
"$kiln" seed user-data -o seed.img >/dev/null
vars=(-var "base_image=$base" -var "base_sha256=$sha" -var "ssh_private_key_file=$work/key")

run() { # tool → prints "seconds bytes"
  rm -rf output-qemu
  local start end
  start=$(date +%s.%N)
  case $1 in
    packer) PACKER_LOG=1 PACKER_CACHE_DIR=$work/packer-cache packer build "${vars[@]}" "$recipe" > "$work/$1.log" 2>&1 ;;
    kiln) XDG_STATE_HOME=$work/state "$kiln" build "${vars[@]}" "$recipe" > "$work/$1.log" 2>&1 ;;
  esac || { echo "$1 failed; its log:" >&2; tail -30 "$work/$1.log" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) $(stat -c %s output-qemu/bench.qcow2)"
}

declare -a pt ps kt ks pr
for i in $(seq "$runs"); do
  read -r t s < <(run packer); pt+=("$t"); ps+=("$s"); echo "run $i packer: ${t} s, $((s / 1048576)) MiB"
  read -r t s < <(run kiln);   kt+=("$t"); ks+=("$s"); echo "run $i kiln:   ${t} s, $((s / 1048576)) MiB"
  # Each pair runs back to back, so its ratio is the least sensitive to a changing load.
  pr+=("$(echo "scale=3; ${kt[-1]} / ${pt[-1]}" | bc)"); echo "run $i ratio kiln/packer: ${pr[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mpt=$(median "${pt[@]}"); mkt=$(median "${kt[@]}"); mps=$(median "${ps[@]}"); mks=$(median "${ks[@]}")
echo "median wall time: packer ${mpt} s, kiln ${mkt} s, ratio kiln/packer $(echo "scale=3; $mkt / $mpt" | bc)"
echo "median of the per-run ratios: $(median "${pr[@]}")"
echo "median artifact:  packer $((${mps%.*} / 1048576)) MiB, kiln $((${mks%.*} / 1048576)) MiB, ratio kiln/packer $(echo "scale=3; $mks / $mps" | bc)"
echo "packer's qemu: $(grep -o 'Executing /usr/bin/qemu-system-x86_64: .*' "$work/packer.log" | head -1 | cut -c1-400)"
echo "kiln's qemu:   $(grep -o 'starting: qemu-system-x86_64 .*' "$work/kiln.log" | tail -1 | cut -c1-400)"
echo "kiln's last per-step times:"
sed -n '/^Summary/,$p' "$work/kiln.log"
