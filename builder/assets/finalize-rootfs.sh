#!/bin/sh
# Runs inside the new rootfs (chroot, from mmdebstrap's customize hook) after
# owui-builder copied in the agent, units and overlays. Arguments: the units
# to enable. Everything that needs the image's own tools happens here; the
# builder does the rest on the tree from outside.
set -eu
for unit in "$@"; do
    systemctl enable "$unit"
done
# The initrd is rebuilt with our verity hook (Debian's leaves out erofs and
# dm-verity); SOURCE_DATE_EPOCH makes the cpio archive reproducible.
update-initramfs -u -k all
mkdir -p /usr/lib/owui
dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' | LC_ALL=C sort >/usr/lib/owui/packages.tsv
