#!/usr/bin/env bash
# Builds kiln's Debian package (kiln_VERSION-1_ARCH.deb) with cargo-deb.
#
#   packaging/build-deb.sh                       # release build → <target>/debian/kiln_*.deb
#   packaging/build-deb.sh --profile dev         # the debug binary (tests)
#   packaging/build-deb.sh --binary PATH         # package this binary instead of building one
#   packaging/build-deb.sh --out DIR             # write the .deb into DIR
#
# Steps: build the binary (cargo build --profile P), copy it to <target>/<profile>/packaging/,
# generate the man pages (`kiln man`) and the bash/zsh/fish completions (`kiln completions`)
# there with that binary, then `cargo deb --no-build --profile P`. Cargo.toml's
# [package.metadata.deb] lists what goes where; `target/release/` in it stands for
# <target>/<profile>/.
#
# cargo-deb: $CARGO_DEB, else `cargo-deb` on PATH, else the copy tests/run.sh installs into
# ~/.cache/kiln-tests/cargo-deb-3.8 (install one with
# `cargo install cargo-deb --locked --version 3.8.0`).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
binary=
out=
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --binary) binary=$2; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in
  dev|debug) profile=dev; profile_dir=debug ;;
  *) profile_dir=$profile ;;
esac

cargo_deb=${CARGO_DEB:-}
if [ -z "$cargo_deb" ]; then
  if command -v cargo-deb >/dev/null; then cargo_deb=cargo-deb
  elif [ -x "$HOME/.cache/kiln-tests/cargo-deb-3.8/bin/cargo-deb" ]; then
    cargo_deb="$HOME/.cache/kiln-tests/cargo-deb-3.8/bin/cargo-deb"
  else
    echo "build-deb.sh: cargo-deb not found; install it with: cargo install cargo-deb --locked --version 3.8.0" >&2
    exit 1
  fi
fi

target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
[ -n "$target_dir" ] || { echo "build-deb.sh: cannot tell cargo's target directory" >&2; exit 1; }
stage="$target_dir/$profile_dir/packaging"
out=${out:-$target_dir/debian}

if [ -z "$binary" ]; then
  echo "== cargo build --profile $profile"
  cargo build --locked --profile "$profile" --bin kiln
  binary="$target_dir/$profile_dir/kiln"
fi

echo "== staging in $stage"
rm -rf "$stage"
mkdir -p "$stage/man" "$stage/completions" "$out"
# Installed binaries are stripped (Debian policy 10.1): a debug binary is hundreds of MB of
# DWARF, a release one still carries line tables. The symbol table stays, so a panic's
# backtrace still names the functions.
strip --strip-debug -o "$stage/kiln" "$binary"
chmod 755 "$stage/kiln"
"$stage/kiln" --version
"$stage/kiln" man --out "$stage/man" >/dev/null
gzip -9n "$stage"/man/*.1
"$stage/kiln" completions bash >"$stage/completions/kiln"
"$stage/kiln" completions zsh >"$stage/completions/_kiln"
"$stage/kiln" completions fish >"$stage/completions/kiln.fish"

echo "== cargo deb --no-build --profile $profile"
# A dev package is for tests: cargo-deb's warning about dev profiles is silenced, and it is
# compressed quickly (the test installs it once and throws it away).
extra=()
[ "$profile" = dev ] && extra=(--quiet --fast)
"$cargo_deb" --no-build --profile "$profile" --output "$out" "${extra[@]}"
ls -l "$out"/kiln_*.deb
