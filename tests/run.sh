#!/usr/bin/env bash
# kiln's whole test suite on a fresh Debian 12 machine: installs what the tests need (as root
# or through sudo), checks formatting and lints, then runs every test.
#   tests/run.sh            # everything
#   tests/run.sh recipe::   # only tests whose name contains "recipe::" (passed to cargo test)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------------
# Debian packages the tests use; only missing ones are installed.
APT_PACKAGES=(
  genisoimage xorriso mtools dosfstools util-linux mount cloud-image-utils  # seed images (tests/seed.rs)
  openssh-server procps                                                      # a real sshd (tests/ssh.rs)
  xz-utils lz4 unzip tabix gzip tar coreutils                                # archive checks (tests/post_processors.rs)
  xvfb x11-apps x11-utils libgl1-mesa-dri libegl1 libxkbcommon-x11-0         # the window under Xvfb (tests/gui_window.rs)
  dbus gnome-keyring openssh-client                                          # a real Secret Service (tests/keyring.rs)
  iproute2                                                                   # ss: listening sockets (tests/build_publish.rs)
  zstd                                                                       # the step cache's VM state (tests/build_e2e.rs)
  desktop-file-utils appstream dpkg-dev binutils man-db                      # the .deb and its desktop files (tests/packaging.rs)
  mesa-vulkan-drivers                                                        # lavapipe: wgpu renders the GUI snapshots headless (tests/gui_snapshots.rs)
  ansible-core vagrant vagrant-libvirt                                       # Ansible against a VM, Vagrant reads the box (tests/build_installer.rs)
  python3-venv                                                               # check-jsonschema from PyPI checks docs/ci.md's job files (tests/packaging.rs)
)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "tests/run.sh: need root (or sudo) to install: $*" >&2; exit 1; fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# qemu: Debian 12's qemu-system-x86 (7.2) conflicts with a newer qemu-utils when one is
# preinstalled; this line resolves it by taking bookworm's qemu-utils too.
if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null; then
  log "installing qemu-system-x86"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    --allow-downgrades qemu-system-x86 qemu-utils/bookworm qemu-block-extra/bookworm
fi

# --- Rust toolchain ---------------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
  echo "tests/run.sh: cargo not found; install Rust 1.95 with rustup (https://rustup.rs) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

# --- Garage (a real S3 server for tests/objectstore.rs and the exoscale-import tests) ---------
# Built once into a cached location (a few minutes); KILN_GARAGE overrides the binary.
GARAGE_ROOT="$HOME/.cache/kiln-tests/garage-2.5"
if [ -z "${KILN_GARAGE:-}" ] && [ ! -x "$GARAGE_ROOT/bin/garage" ]; then
  log "installing Garage 2.5 into $GARAGE_ROOT"
  cargo install garage --locked --version '^2.5' --root "$GARAGE_ROOT"
fi

# --- cargo-deb (tests/packaging.rs builds kiln's .deb with it) ------------------------------
# Installed once into a cached location (about 2 minutes); CARGO_DEB overrides the binary.
CARGO_DEB_ROOT="$HOME/.cache/kiln-tests/cargo-deb-3.8"
if [ -z "${CARGO_DEB:-}" ] && [ ! -x "$CARGO_DEB_ROOT/bin/cargo-deb" ]; then
  log "installing cargo-deb 3.8 into $CARGO_DEB_ROOT"
  cargo install cargo-deb --locked --version 3.8.0 --root "$CARGO_DEB_ROOT"
fi

# --- check-jsonschema (tests/packaging.rs checks docs/ci.md's GitLab and GitHub job files) -----
# From PyPI into a cached venv (seconds); it ships SchemaStore's schemas, so the check itself
# needs no network. KILN_CHECK_JSONSCHEMA overrides the program.
CHECK_JSONSCHEMA_ROOT="$HOME/.cache/kiln-tests/check-jsonschema"
if [ -z "${KILN_CHECK_JSONSCHEMA:-}" ] && [ ! -x "$CHECK_JSONSCHEMA_ROOT/bin/check-jsonschema" ]; then
  log "installing check-jsonschema 0.35 into $CHECK_JSONSCHEMA_ROOT"
  rm -rf "$CHECK_JSONSCHEMA_ROOT"
  /usr/bin/python3 -m venv "$CHECK_JSONSCHEMA_ROOT"
  "$CHECK_JSONSCHEMA_ROOT/bin/pip" install -q 'check-jsonschema==0.35.0'
fi

# --- dependency audit: cargo audit against the RustSec advisory database ---------------------
# The database is a git repository on GitHub. It is cloned into a cached location and updated
# when GitHub answers; machines that reach only the package registries use a copy put there by
# hand (KILN_ADVISORY_DB overrides the place). Without a database the audit is reported as
# "not run" in docs/RELIABILITY.md, never as passed; cargo-audit is only installed when needed.
ADVISORY_DB="${KILN_ADVISORY_DB:-$HOME/.cache/kiln-tests/advisory-db}"
CARGO_AUDIT_ROOT="$HOME/.cache/kiln-tests/cargo-audit"
if [ ! -d "$ADVISORY_DB/crates" ]; then
  log "fetching the RustSec advisory database into $ADVISORY_DB"
  timeout 120 git clone -q --depth 1 https://github.com/rustsec/advisory-db "$ADVISORY_DB" 2>&1 ||
    { rm -rf "$ADVISORY_DB"; echo "cannot reach github.com: the dependency audit will not run"; }
elif [ -z "${KILN_ADVISORY_DB:-}" ]; then
  timeout 60 git -C "$ADVISORY_DB" pull -q --ff-only 2>/dev/null ||
    echo "the advisory database could not be updated; using the copy of $(git -C "$ADVISORY_DB" log -1 --format=%cs 2>/dev/null || echo 'unknown date')"
fi
if [ -d "$ADVISORY_DB/crates" ] && [ ! -x "$CARGO_AUDIT_ROOT/bin/cargo-audit" ]; then
  log "installing cargo-audit 0.22 into $CARGO_AUDIT_ROOT"
  cargo install cargo-audit --locked --version '^0.22' --root "$CARGO_AUDIT_ROOT"
fi

# --- disk space -------------------------------------------------------------------------------
# The test build (target/: 4.7 GB from scratch, measured on a clean clone) and the VM images
# the tests make in ~/.cache/kiln-tests and the temporary directory need room: say so now
# rather than let rustc or qemu-img stop halfway on "No space left on device". KILN_MIN_FREE_GB
# overrides the threshold. A clean clone in CI does not reuse incremental caches, so they are
# not written there (they would only take space).
min_free_gb=${KILN_MIN_FREE_GB:-15}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
free_gb=$(df -P -BG "$target_dir" | awk 'NR == 2 { sub("G", "", $4); print $4 }')
if [ "${free_gb:-0}" -lt "$min_free_gb" ]; then
  echo "tests/run.sh: only ${free_gb} GB free on the disk of $target_dir; the test suite needs about $min_free_gb GB" >&2
  echo "  (free some space, e.g. \`cargo clean\` in other checkouts, or point CARGO_TARGET_DIR to a larger disk)" >&2
  exit 1
fi
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

# --- checks -----------------------------------------------------------------------------------
# Tests that check files with external tools fail (instead of skipping) when a tool is missing.
export KILN_REQUIRE_TOOLS=1
# A full run checks against the committed expectations; it never rewrites them.
unset KILN_BLESS UPDATE_SNAPSHOTS

start=$(date +%s)
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
log "cargo test"
mkdir -p target
status=0
cargo test --all-targets --no-fail-fast "$@" 2>&1 | tee target/test-output.log || status=$?
# The audit's result goes into the same log, as a test of a binary named `audit`.
if [ $# -eq 0 ] && [ -d "$ADVISORY_DB/crates" ]; then
  advisory_date=$(git -C "$ADVISORY_DB" log -1 --format=%cs 2>/dev/null || echo 'unknown date')
  log "cargo audit (advisory database of $advisory_date)"
  audit=ok
  "$CARGO_AUDIT_ROOT/bin/cargo-audit" audit --db "$ADVISORY_DB" --no-fetch --stale || { audit=FAILED; status=1; }
  # The database's date goes into the report with the result: a pass is as new as it is.
  printf '     Running audit (cargo audit, advisory database of %s)\ntest cargo_audit ... %s\n' "$advisory_date" "$audit" >> target/test-output.log
fi
# A full run (no filter) regenerates the reliability report from its results.
if [ $# -eq 0 ]; then
  bash tests/reliability.sh target/test-output.log docs/RELIABILITY.md
fi
log "tests/run.sh finished in $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
