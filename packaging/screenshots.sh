#!/usr/bin/env bash
# Screenshots of kiln's main places for the README, taken from the real window under Xvfb:
#   packaging/screenshots.sh [KILN_BINARY]     → docs/screenshots/{recipes,build,templates,credentials,host-check}.png
#
# Everything runs in a throwaway home: a private D-Bus session with gnome-keyring holding a
# made-up Exoscale profile ("demo") and a generated SSH key, a small local stand-in for the
# Exoscale API (EXOSCALE_API_ENDPOINT) that lists a few templates, and, for the Build place,
# a real build of a test recipe on the Debian test image (tests/fixtures/debian-image.sh's
# cache, or KILN_SHOT_BASE=/path/to/image.qcow2), cancelled once the screenshot is taken
# (KILN_SHOT_ACCEL=tcg where nested KVM fails). Without a base image the Build screenshot is
# skipped. KILN_SHOT_ONLY="build templates" takes only those.
#
# Needs: xvfb xdotool imagemagick dbus gnome-keyring python3 (apt-get install them).
# Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/docs/screenshots

for tool in Xvfb xdotool /usr/bin/import dbus-daemon dbus-send gnome-keyring-daemon python3; do
  command -v "$tool" >/dev/null || {
    echo "screenshots.sh: $tool not found (apt-get install xvfb xdotool imagemagick dbus gnome-keyring python3)" >&2
    exit 1
  }
done

kiln=${1:-}
if [ -z "$kiln" ]; then
  cargo build --quiet --bin kiln
  target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
  kiln=$target_dir/debug/kiln
fi
# A copy: a concurrent cargo build cannot swap the binary under us.
work=$(mktemp -d)
cp "$kiln" "$work/kiln"
kiln=$work/kiln

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

real_home=$HOME
export HOME=$work/home XDG_CONFIG_HOME=$work/config XDG_DATA_HOME=$work/data \
  XDG_STATE_HOME=$work/state XDG_CACHE_HOME=$work/cache XDG_RUNTIME_DIR=$work/run
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_DATA_HOME/kiln" "$XDG_STATE_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
unset EXOSCALE_API_KEY EXOSCALE_API_SECRET WAYLAND_DISPLAY
export KILN_RECIPES_DIR=$repo/recipes

# --- display ---------------------------------------------------------------------------------
Xvfb -displayfd 1 -screen 0 1280x800x24 -nolisten tcp >"$work/display" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/display" ] && break; sleep 0.1; done
DISPLAY=:$(head -1 "$work/display")
export DISPLAY

# --- keyring with a demo profile and key -----------------------------------------------------
# A bus without service activation: on the stock session configuration the first call to
# org.freedesktop.secrets can auto-start a second, password-less gnome-keyring that wins the name.
mkdir -m 700 "$work/bus.d"
cat >"$work/bus.conf" <<CONF
<busconfig>
  <type>session</type>
  <listen>unix:dir=$work/bus.d</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
CONF
dbus-daemon --config-file="$work/bus.conf" --nofork --nopidfile --print-address=1 >"$work/bus" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/bus" ] && break; sleep 0.1; done
DBUS_SESSION_BUS_ADDRESS=$(head -1 "$work/bus")
export DBUS_SESSION_BUS_ADDRESS
printf 'screenshots' | gnome-keyring-daemon --foreground --unlock --components=secrets >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \
    org.freedesktop.DBus.Peer.Ping >/dev/null 2>&1 && break
  sleep 0.1
done
# Made-up values: the stand-in API below accepts anything.
# gnome-keyring answers before its login keyring is ready: try for a few seconds.
for try in $(seq 50); do
  printf 'EXO0123456789abcdef01234567\nnot-a-real-secret\n' |
    "$kiln" credentials set demo --zone ch-gva-2 --no-check --stdin >/dev/null 2>"$work/set.err" && break
  [ "$try" = 50 ] && { cat "$work/set.err" >&2; exit 1; }
  sleep 0.2
done
"$kiln" keys generate deploy >/dev/null

# --- a stand-in for the Exoscale API: GET /<zone>/v2/template --------------------------------
cat >"$work/api.py" <<'EOF'
import json, sys, uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

now = datetime.now(timezone.utc)
TEMPLATES = {
    "ch-gva-2": [("debian-12-web", 3), ("debian-12-base", 12), ("debian-12-base", 45), ("ci-runner", 64)],
    "de-fra-1": [("debian-12-web", 3), ("debian-12-base", 12)],
    "at-vie-1": [("debian-11-legacy", 210)],
}

class Api(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[1:] == ["v2", "template"]:
            zone = parts[0]
            body = {"templates": [{
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{zone}/{name}/{age}")),
                "name": name, "family": "debian", "size": 10 * 2**30,
                "boot-mode": "legacy" if "legacy" in name else "uefi",
                "created-at": (now - timedelta(days=age)).isoformat(timespec="seconds"),
                "visibility": "private", "zones": [zone], "default-user": "debian",
            } for name, age in TEMPLATES.get(zone, [])]}
            data = json.dumps(body).encode()
            self.send_response(200)
        else:
            data = b'{"message": "not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Api)
print(server.server_port, flush=True)
server.serve_forever()
EOF
python3 "$work/api.py" >"$work/api-port" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/api-port" ] && break; sleep 0.1; done
EXOSCALE_API_ENDPOINT="http://127.0.0.1:$(head -1 "$work/api-port")/{zone}/v2"
export EXOSCALE_API_ENDPOINT

# --- the recipe the Build screenshot runs ----------------------------------------------------
base=${KILN_SHOT_BASE:-$(find "$real_home/.cache/kiln-tests" -maxdepth 1 -name 'debian-12-*.qcow2' 2>/dev/null | head -1)}
cat >"$work/web-server.json" <<EOF
{
  "variables": {
    "base_image": "{{env \`KILN_SHOT_BASE\`}}",
    "output": "$work/output"
  },
  "builders": [{
    "type": "qemu", "name": "web-server", "disk_image": true, "accelerator": "${KILN_SHOT_ACCEL:-auto}",
    "iso_url": "{{user \`base_image\`}}", "iso_checksum": "none",
    "output_directory": "{{user \`output\`}}", "vm_name": "web-server.qcow2",
    "disk_size": "10G", "memory": 1024, "cpus": 2, "headless": true, "disable_vnc": true,
    "ssh_username": "debian", "ssh_timeout": "10m", "shutdown_command": "sudo shutdown -P now"
  }],
  "provisioners": [
    {"type": "shell", "inline": [
      "echo provisioning $(hostname) as $(id -un)",
      "for step in packages users firewall web-server monitoring; do echo \"configuring \$step\"; sleep 4; done"
    ]},
    {"type": "file", "content": "hello from kiln\n", "destination": "/tmp/motd"}
  ],
  "post-processors": [{"type": "checksum", "checksum_types": ["sha256"]}]
}
EOF
export KILN_SHOT_BASE=$base

# --- the window, place by place -------------------------------------------------------------
mkdir -p "$out"
kiln_pid=
wid=

# open_window RECIPE: starts kiln on RECIPE (through its saved state) and waits for its window.
open_window() {
  printf '{"app": "(recipe:Some(\\"%s\\"))"}\n' "$1" >"$XDG_DATA_HOME/kiln/app.ron"
  "$kiln" >>"$work/kiln.log" 2>&1 &
  kiln_pid=$!
  pids+=("$kiln_pid")
  wid=
  for _ in $(seq 100); do
    wid=$(xdotool search --onlyvisible --name '^kiln$' 2>/dev/null | head -1 || true)
    [ -n "$wid" ] && break
    sleep 0.1
  done
  [ -n "$wid" ] || { echo "screenshots.sh: the window did not appear:" >&2; cat "$work/kiln.log" >&2; exit 1; }
  xdotool windowfocus --sync "$wid"
  sleep 1
}

close_window() {
  kill "$kiln_pid" 2>/dev/null || true
  wait "$kiln_pid" 2>/dev/null || true
}

# place NAME: clicks NAME in the sidebar (positions in the window's own pixels).
place() {
  local y
  case "$1" in
    Recipes) y=48 ;; Build) y=77 ;; Templates) y=106 ;; Credentials) y=135 ;; Host) y=164 ;;
  esac
  xdotool mousemove --window "$wid" 40 "$y" click 1
  xdotool mousemove --window "$wid" 1000 700
}

# capture FILE: the window as docs/screenshots/FILE.png.
capture() {
  /usr/bin/import -window "$wid" -strip "$out/$1.png"
  printf '%s: %s bytes\n' "docs/screenshots/$1.png" "$(stat -c %s "$out/$1.png")"
}

# wanted NAME: whether KILN_SHOT_ONLY (names separated by spaces; default: all) lists NAME.
wanted() { [ -z "${KILN_SHOT_ONLY:-}" ] || [[ " $KILN_SHOT_ONLY " == *" $1 "* ]]; }

if wanted recipes || wanted templates || wanted credentials || wanted host-check; then
  open_window "$repo/recipes/debian-12.json"
  if wanted recipes; then capture recipes; fi
  for p in Templates:templates Credentials:credentials Host:host-check; do
    wanted "${p#*:}" || continue
    place "${p%%:*}"
    sleep 3
    capture "${p#*:}"
  done
  close_window
fi

if wanted build && [ -n "$base" ] && [ -f "$base" ]; then
  open_window "$work/web-server.json"
  # Ctrl+B starts the build and shows the Build place; the capture is taken while the
  # provisioner runs. Closing the window cancels the build (its qemu goes with it).
  xdotool key --clearmodifiers ctrl+b
  # Wait (at most KILN_SHOT_BUILD_SECONDS, default 300) until the provisioner is half-way.
  for _ in $(seq "${KILN_SHOT_BUILD_SECONDS:-300}"); do
    grep -qs 'configuring firewall' "$XDG_STATE_HOME"/kiln/builds/*/build.log && break
    sleep 1
  done
  sleep 1
  capture build
  close_window
else
  echo "screenshots.sh: no base image (set KILN_SHOT_BASE or run tests/fixtures/debian-image.sh): build.png not taken" >&2
fi
