#!/usr/bin/env bash
# Cold start of the release binary to its first frame under Xvfb, 5 runs; then idle CPU over 5 s.
set -u
bin=${1:-$(cd "$(dirname "$0")/.." && pwd)/target/release/kiln}  # cargo build --release first
Xvfb :77 -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!
sleep 1
for i in 1 2 3 4 5; do
  home=$(mktemp -d)
  start=$(date +%s%N)
  HOME=$home XDG_DATA_HOME=$home/data XDG_CONFIG_HOME=$home/config KILN_LOG=info DISPLAY=:77 \
    "$bin" > /dev/null 2> $home/err < /dev/null & pid=$!
  for _ in $(seq 1 300); do grep -q "first frame after" $home/err && break; sleep 0.01; done
  now=$(date +%s%N)
  echo "run $i: spawn to first-frame log line $(( (now-start)/1000000 )) ms; kiln says: $(grep -o 'first frame after [0-9]* ms' $home/err)"
  if [ $i = 5 ]; then
    sleep 8
    t1=$(awk '{print $14+$15}' /proc/$pid/stat); sleep 5; t2=$(awk '{print $14+$15}' /proc/$pid/stat)
    echo "idle CPU over 5 s: $(( t2 - t1 )) ticks of $(getconf CLK_TCK)/s = $(awk -v d=$((t2-t1)) -v h=$(getconf CLK_TCK) 'BEGIN{printf "%.2f", 100*d/h/5}') %"
    echo "RSS: $(grep VmRSS /proc/$pid/status)"
  fi
  kill $pid; wait $pid 2>/dev/null; rm -rf $home
done
kill $xvfb
