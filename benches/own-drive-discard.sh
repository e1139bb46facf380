#!/usr/bin/env bash
# Image size on the seed article's form (the recipe's own `-drive` for the output disk,
# benches/article.json) with the drive's discards ignored — `discard=ignore`, what qemu does
# for a drive that says nothing and what kiln did before — against the drive saying nothing,
# for which kiln now adds `discard=unmap,detect-zeroes=unmap`. Same build otherwise (its
# provisioner writes, syncs and deletes 64 MiB). Prints each size and the ratio.
#   benches/own-drive-discard.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
kiln=$PWD/target/debug/kiln
base=$(bash tests/fixtures/debian-image.sh)
sha=$(sha256sum "$base" | cut -d' ' -f1)
recipe=$PWD/benches/article.json

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
ssh-keygen -q -t ed25519 -N '' -f key
printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat key.pub)" > user-data
"$kiln" seed user-data -o seed.img >/dev/null
vars=(-var "base_image=$base" -var "base_sha256=$sha" -var "ssh_private_key_file=$work/key")

declare -A size
for variant in ignore unset; do
  case $variant in
    ignore) sed 's/discard=unmap/discard=ignore/' "$recipe" > "r-$variant.json" ;;
    unset) sed 's/,discard=unmap//' "$recipe" > "r-$variant.json" ;;
  esac
  rm -rf output-qemu
  start=$(date +%s)
  XDG_STATE_HOME=$work/state "$kiln" build "${vars[@]}" "r-$variant.json" > "$variant.log" 2>&1 \
    || { echo "the $variant build failed; its log:" >&2; tail -30 "$variant.log" >&2; exit 1; }
  size[$variant]=$(stat -c %s output-qemu/bench.qcow2)
  echo "drive discard=$variant: $(( $(date +%s) - start )) s, ${size[$variant]} bytes ($(( size[$variant] / 1048576 )) MiB)"
done
echo "ratio unset/ignore: $(echo "scale=2; ${size[unset]} / ${size[ignore]}" | bc)"
