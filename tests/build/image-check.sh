#!/bin/sh
# A kiln-test script check of the fixture build: the script provisioner's marker shipped.
set -e
echo "marker: $(sudo cat /root/marker)"
sudo grep -qx kiln-script /root/marker
