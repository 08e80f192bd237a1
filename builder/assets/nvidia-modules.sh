#!/bin/sh
# Runs on the build host from mmdebstrap's customize hook for a gpu or
# allinone image, before finalize-rootfs.sh; $1 is the new rootfs. The image
# has no apt, so packages come and go through the host's apt acting on the
# tree (mmdebstrap's config); DKMS runs in the chroot. Settings come from
# /usr/lib/owui/nvidia/set.env, written by owui-builder from the spec's [gpu]
# section and the driver set.
#
# 1. Builds the NVIDIA kernel modules for the image's own kernel with DKMS
#    (headers, compiler and dkms installed for this only), or takes the
#    package a previous build made for the same kernel, set and flavour.
# 2. Packs the modules as owui-nvidia-modules-<kver> (a .deb, so the package
#    list and the SBOM show them) and installs it.
# 3. Purges every build tool again: the image is an appliance, nothing is
#    compiled at the site.
# 4. Installs the set's user-space packages at the set's exact versions.
# Every .deb of the set is checked against the set's sha256 before dpkg sees
# it. Failures print one "owui-nvidia: " line that the builder reports.
set -eu
root=$1
. "$root/usr/lib/owui/nvidia/set.env"
export DEBIAN_FRONTEND=noninteractive
[ -n "${MMDEBSTRAP_APT_CONFIG:-}" ] || { echo "owui-nvidia: run me from mmdebstrap" >&2; exit 1; }
export APT_CONFIG="$MMDEBSTRAP_APT_CONFIG"

fail() {
    echo "owui-nvidia: $*" >&2
    exit 1
}

# Progress, passed on by the builder while the rootfs stage runs. Not
# "owui-nvidia: ", which the builder reads as this script's failure.
step() {
    echo "owui-nvidia step: $*" >&2
}

kver=$(ls "$root/usr/lib/modules")
[ "$(echo "$kver" | wc -w)" -eq 1 ] ||
    fail "expected one kernel in /lib/modules, found: $kver"
kpkg=$(chroot "$root" dpkg-query -W -f '${Version}' "linux-image-$kver")
name="owui-nvidia-modules-$kver"
# In the tree; the builder syncs it with its cache directory.
cache=/var/cache/owui-nvidia
cached="$cache/$CACHE_KEY-$kpkg.deb"

# apt runs on the host but dpkg must run in the tree: without these (what
# mmdebstrap passes itself) dpkg would unpack into the build host.
apt_tree() {
    apt-get -o Dir::Bin::dpkg=env -o DPkg::Options::=--unset=TMPDIR \
        -o DPkg::Options::=dpkg -o DPkg::Chroot-Directory="$root" "$@"
}

apt_install() {
    apt_tree install -y --no-install-recommends "$@"
}

# Runs "$@", saying every 30 s that WHAT still runs: a DKMS compile shows
# nothing for minutes. The sleeps hold no copy of stderr, so the builder's
# read of it ends when this script does.
ticking() {
    what=$1
    shift
    (t=0; while sleep 30 >/dev/null 2>&1; do t=$((t + 30)); step "$what: still running after $t s"; done) &
    ticker=$!
    rc=0
    "$@" || rc=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    return "$rc"
}

# Downloads PKG=VERSION arguments, then checks each one the set pins.
fetch_verified() {
    apt_install --download-only "$@"
    for arg in "$@"; do
        case "$arg" in *=*) ;; *) continue ;; esac
        pkg=${arg%%=*}
        ver=${arg#*=}
        want=$(awk -v p="$pkg" '$2 == p { print $1 }' "$root/usr/lib/owui/nvidia/sha256sums")
        [ -n "$want" ] || continue
        file_ver=$(echo "$ver" | sed 's/:/%3a/')
        deb=$(ls "$root/var/cache/apt/archives/${pkg}_${file_ver}"_*.deb 2>/dev/null | head -n 1)
        [ -n "$deb" ] || fail "package $pkg $ver: apt downloaded no .deb for it"
        got=$(sha256sum "$deb" | cut -d' ' -f1)
        [ "$got" = "$want" ] ||
            fail "package $pkg $ver: sha256 $got, the set pins $want"
    done
}

installed() {
    chroot "$root" dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' |
        awk '$1 ~ /^.i/ { print $2 }'
}

build_modules() {
    start=$(date +%s)
    # What the image had before the tool chain came: the purge must leave it.
    installed >"$root/usr/lib/owui/nvidia/before"
    step "downloading $MODULE_PACKAGE, the set's packages and linux-headers-$kver; checking their sha256"
    fetch_verified "linux-headers-$kver=$kpkg" dkms "$MODULE_PACKAGE" $PACKAGES
    mkdir -p "$root/etc/dkms/framework.conf.d"
    # Unsigned: dkms would sign with a key it makes up on the spot, so the
    # bytes would differ per build and the private key would sit in the
    # image. No modprobe: the running kernel is the build host's.
    printf 'sign_file=/nonexistent\nmodprobe_on_install=\n' \
        >"$root/etc/dkms/framework.conf.d/owui.conf"
    export KBUILD_BUILD_TIMESTAMP="$(date -u -d "@$SOURCE_DATE_EPOCH" '+%Y-%m-%d %H:%M:%S UTC')"
    export KBUILD_BUILD_USER=owui KBUILD_BUILD_HOST=owui-builder
    step "compiling $MODULE_PACKAGE for $kver with DKMS (minutes; cached for later builds)"
    ticking "the DKMS compile" apt_install "linux-headers-$kver=$kpkg" dkms "$MODULE_PACKAGE" $PACKAGES || {
        log=$(ls "$root"/var/lib/dkms/*/*/build/make.log 2>/dev/null | head -n 1)
        # The compiler's own errors, not the configure probes' or flags'.
        why=$([ -n "$log" ] && grep -m 3 -E ': error: |\*\*\* ' "$log" | cut -c1-300 | tr '\n' ' ')
        fail "DKMS could not build $MODULE_PACKAGE for $kver: ${why:-no make.log}"
    }
    # The package's postinst builds for every kernel with headers; this
    # makes sure of ours and is a no-op when it already did.
    chroot "$root" dkms autoinstall -k "$kver"

    pkgroot=$(mktemp -d)
    dest="$pkgroot/usr/lib/modules/$kver/updates/owui-nvidia"
    mkdir -p "$dest" "$pkgroot/DEBIAN"
    found=$(find "$root/usr/lib/modules/$kver/updates/dkms" -name '*.ko*' | LC_ALL=C sort)
    [ -n "$found" ] || fail "dkms built no modules for $kver"
    for ko in $found; do
        cp "$ko" "$dest/"
    done
    cat >"$pkgroot/DEBIAN/control" <<EOF
Package: $name
Version: $DRIVER_VERSION
Architecture: amd64
Maintainer: owui-builder <owui-builder@localhost>
Section: non-free/kernel
Priority: optional
Depends: linux-image-$kver (= $kpkg)
Provides: $PROVIDES
Description: NVIDIA $FLAVOUR kernel modules $DRIVER_VERSION for Linux $kver
 Built by owui-builder with DKMS from $MODULE_PACKAGE of driver set $SET_NAME
 at image build time, so that nothing is compiled at the site.
EOF
    find "$pkgroot" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    mkdir -p "$root$cache"
    dpkg-deb --root-owner-group -Zxz --build "$pkgroot" "$root$cached.tmp" >/dev/null
    mv "$root$cached.tmp" "$root$cached"
    rm -rf "$pkgroot"
    echo "$kver $(($(date +%s) - start))" >"$root$cached.seconds"
    step "built $name in $(($(date +%s) - start)) s"

    chroot "$root" dpkg -i "$cached"
    rm "$root/etc/dkms/framework.conf.d/owui.conf"
    # The modules now come from our package: the DKMS package and the tool
    # chain go, with everything only they needed. A package kept only
    # because an installed one suggests it goes too: adduser suggests perl
    # (dpkg-dev's) and perl suggests make, which would keep make otherwise.
    # The simulation first: nothing the image had before may go.
    set -- -o APT::AutoRemove::SuggestsImportant=false purge --autoremove \
        "${MODULE_PACKAGE%%=*}" dkms "linux-headers-$kver"
    lost=$(apt_tree -s "$@" | awk '$1 == "Purg" { sub(/:.*/, "", $2); print $2 }' |
        grep -Fx -f "$root/usr/lib/owui/nvidia/before" || true)
    [ -z "$lost" ] || fail "purging the build tools would remove: $(echo $lost)"
    step "purging the compilers, headers and DKMS"
    apt_tree -y "$@"
}

if [ -f "$root$cached" ]; then
    step "installing the cached $name and the set's packages"
    chroot "$root" dpkg -i "$cached"
    fetch_verified $PACKAGES
    apt_install $PACKAGES
else
    build_modules
fi

# One driver alternative (it points /usr/lib/nvidia/nvidia, the modprobe.d
# aliases and the libraries at one branch): a dependency that pulled in
# another driver branch's packages needs the set's own package pinned.
alts=$(chroot "$root" dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Provides}\n' |
    awk '$1 ~ /^.i/ && /[ ,]nvidia-alternative-any([ ,]|$)/ { print $2 }')
[ "$(echo "$alts" | wc -w)" -eq 1 ] ||
    fail "expected the set's one NVIDIA driver alternative, found: $(echo $alts)"
left=$(installed |
    grep -E '^(dkms|gcc|gcc-[0-9]+|cpp|cpp-[0-9]+|make|linux-headers-.*|linux-kbuild-.*|linux-compiler-.*|.*-dkms)$' || true)
[ -z "$left" ] || fail "build tools left in the image: $(echo $left)"
rm -rf "$root/var/lib/dkms" "$root"/usr/src/linux-headers-* "$root"/usr/src/nvidia-* "$root/etc/dkms"
chroot "$root" depmod -a "$kver"
rm -rf "$root/usr/lib/owui/nvidia"
