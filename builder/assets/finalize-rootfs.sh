#!/bin/sh
# Runs inside the new rootfs (chroot, from mmdebstrap's customize hook) after
# owui-builder copied in the agent, units and overlays. Arguments: the units
# to enable. Everything that needs the image's own tools happens here; the
# builder does the rest on the tree from outside.
set -eu
for unit in "$@"; do
    systemctl enable "$unit"
done
# The operator account (overlay/common): /etc is read-only on the node, so
# it is made here. A broken sudoers file fails the build, not the node.
if [ -e /usr/lib/sysusers.d/owui-admin.conf ]; then
    systemd-sysusers /usr/lib/sysusers.d/owui-admin.conf
fi
if command -v visudo >/dev/null; then
    visudo -c -q
fi
# PostgreSQL: the package's postinst made a cluster at build time, before
# our createcluster.d settings were in, with a system identifier every node
# would share and that differs between two builds. Drop it; first boot makes
# the node's own (owui-agent db setup) through /etc/postgresql, a link to the
# data partition, since the root is read-only.
if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header | while read -r version cluster _; do
        pg_dropcluster "$version" "$cluster"
    done
    rm -rf /etc/postgresql /var/lib/postgresql/*
    install -d -o postgres -g postgres -m 0755 /var/lib/postgresql/conf
    ln -s ../var/lib/postgresql/conf /etc/postgresql
fi
# The initrd is rebuilt with our verity hook (Debian's leaves out erofs and
# dm-verity); SOURCE_DATE_EPOCH makes the cpio archive reproducible.
update-initramfs -u -k all
mkdir -p /usr/lib/owui
dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' | LC_ALL=C sort >/usr/lib/owui/packages.tsv
