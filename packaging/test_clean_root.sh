#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Install the packages with dpkg -i into a copy of a clean Debian root and use
# them there: the proof that their Depends are complete.
#
# usage: test_clean_root.sh ROOT DEB_DIR
#   ROOT     a minimal Debian root (debootstrap --variant=minbase); "" takes
#            $GPUCAP_CLEAN_ROOT. When it does not exist and debootstrap is
#            installed, it is made (this needs the Debian mirror). The copy
#            is thrown away; ROOT stays clean.
#   DEB_DIR  the gpucap, gpucap-preload and libgpucap-region-dev packages
# Needs root (chroot) and the Debian mirror from inside the chroot, where
# apt-get fetches what dpkg -i reports missing. Exit 77 (skipped) when it
# cannot run: no ROOT given, not root, no packages.
set -eu
clean=${1:-${GPUCAP_CLEAN_ROOT:-}}
debs=$2
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIPPED: $*"; exit 77; }

[ -n "$clean" ] || skip "set GPUCAP_CLEAN_ROOT=DIR (a Debian root, made with debootstrap if missing) to install the packages into a clean root"
set -- "$debs"/gpucap_*.deb "$debs"/gpucap-preload_*.deb "$debs"/libgpucap-region-dev_*.deb
for deb in "$@"; do [ -f "$deb" ] || skip "no packages in $debs (package.deb makes them)"; done

[ "$(id -u)" -eq 0 ] || skip "installing into a Debian root needs root (chroot)"
if [ ! -d "$clean" ]; then
	command -v debootstrap >/dev/null 2>&1 || skip "$clean does not exist and debootstrap is not installed"
	# shellcheck disable=SC1091
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	debootstrap --variant=minbase "$suite" "$clean" http://deb.debian.org/debian >/dev/null ||
		fail "debootstrap $suite $clean failed"
fi
[ -x "$clean/usr/bin/dpkg" ] || fail "$clean is not a Debian root (no /usr/bin/dpkg)"

root=$(mktemp -d /tmp/gpucap-root-XXXXXX)
trap 'rm -rf "$root"' EXIT
cp -a "$clean/." "$root/"
mkdir -p "$root/tmp/debs"
cp "$@" "$root/tmp/debs/"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

# dpkg -i installs what it is given and reports what is missing: in a clean
# root that is libmicrohttpd12, which the gpucap package must declare.
if in_root sh -c 'dpkg -i /tmp/debs/*.deb' >"$root/dpkg.log" 2>&1; then
	echo "dpkg -i: installed without anything missing"
else
	grep -q 'depends on libmicrohttpd12' "$root/dpkg.log" ||
		{ cat "$root/dpkg.log" >&2; fail "dpkg -i failed for another reason than the libmicrohttpd12 dependency"; }
	echo "dpkg -i: gpucap waits for libmicrohttpd12 (declared); completing with apt-get -f install"
	in_root apt-get update -qq >/dev/null || fail "apt-get update in the root failed"
	in_root apt-get install -f -y -qq --no-install-recommends >"$root/apt.log" 2>&1 ||
		{ cat "$root/apt.log" >&2; fail "apt-get -f install failed"; }
fi
# shellcheck disable=SC2016
in_root dpkg-query -W -f='${Package} ${Version} ${Status}\n' gpucap gpucap-preload libgpucap-region-dev |
	tee "$root/status.txt"
[ "$(grep -c 'install ok installed' "$root/status.txt")" -eq 3 ] || fail "not every package is installed"

in_root gpucap --version || fail "gpucap --version fails in the clean root"
in_root gpucap exporter --help >/dev/null || fail "gpucap exporter --help fails in the clean root"
if in_root ldd /usr/bin/gpucap | grep 'not found'; then fail "gpucap has unresolved libraries in the clean root"; fi
in_root apt-get install -y -qq --no-install-recommends pkg-config >/dev/null 2>&1 ||
	fail "cannot install pkg-config in the root"
in_root pkg-config --cflags --libs gpucap-region || fail "pkg-config gpucap-region fails in the clean root"
echo "ok clean root"
