#!/bin/sh
# Writes the marker the end-to-end test reads back from the finished image.
set -eu
echo "$MARKER" > /root/marker
cp /tmp/uploaded.txt /root/uploaded.txt
echo "marker written: $(cat /root/marker)"
