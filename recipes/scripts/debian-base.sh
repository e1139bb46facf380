#!/bin/sh
# kiln's default provisioning for Debian cloud images: updates, a few base tools, and a
# clean cloud-init state so the published image configures itself on its first real boot.
set -eu

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get -y -o Dpkg::Options::=--force-confold dist-upgrade
apt-get -y install --no-install-recommends ca-certificates curl htop vim-tiny unattended-upgrades
apt-get -y autoremove --purge
apt-get clean
rm -rf /var/lib/apt/lists/*

# Forget this build: cloud-init runs again on the template's first boot, new host keys are
# generated there, and nothing of the build's SSH key stays behind.
cloud-init clean --logs --seed
rm -f /etc/ssh/ssh_host_*
rm -f /home/*/.ssh/authorized_keys /root/.ssh/authorized_keys
truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
