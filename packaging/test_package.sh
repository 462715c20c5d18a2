#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Package test: build the Debian packages from debian/ with dpkg-buildpackage
# (in a copy of the source tree), check them with lintian (no error may
# remain), check what they declare and contain, then unpack them into a
# scratch root and use what they installed: gpucap --version, gpucap exporter
# --help, the preload found by doctor, pkg-config, and a program compiled and
# linked against the installed header and archive.
#
# usage: test_package.sh SOURCE_DIR CC VERSION [DEB_DIR]
# Exit 77 (reported by CTest as skipped, never as passed) when a tool the
# test needs is missing. On success the three packages are copied to DEB_DIR,
# where package.clean_root (packaging/test_clean_root.sh) installs them.
set -eu
source=$1 cc=$2 version=$3 keep=${4:-}

for tool in dpkg-buildpackage dh dpkg-deb lintian pkg-config readelf; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "SKIPPED: $tool is not installed (scripts/install-deps installs it)"
		exit 77
	fi
done

work=$(mktemp -d /tmp/gpucap-package-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# ---- build: dpkg-buildpackage writes next to the tree, so copy it ----------
mkdir "$work/src"
if git -C "$source" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	(cd "$source" && git ls-files -co --exclude-standard -z | xargs -0 tar cf -) | tar xf - -C "$work/src"
else
	(cd "$source" && tar cf - --exclude='./build*' --exclude=./.git .) | tar xf - -C "$work/src"
fi
(cd "$work/src" && dpkg-buildpackage -us -uc -b -j2) >"$work/build.log" 2>&1 ||
	{ tail -n 40 "$work/build.log" >&2; fail "dpkg-buildpackage failed"; }
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
cli=$work/gpucap_${version}_$arch.deb
preload=$work/gpucap-preload_${version}_$arch.deb
dev=$work/libgpucap-region-dev_${version}_$arch.deb
for deb in "$cli" "$preload" "$dev"; do
	[ -f "$deb" ] || fail "dpkg-buildpackage made no $(basename "$deb")"
	echo "built $(basename "$deb")"
done

# ---- lintian: errors fail the test; warnings are printed -------------------
lintian --allow-root --fail-on error --display-level '>=warning' "$cli" "$preload" "$dev" >"$work/lintian.txt" 2>&1 ||
	{ cat "$work/lintian.txt" >&2; fail "lintian reports errors"; }
echo "lintian: $(grep -c '^E:' "$work/lintian.txt" || true) errors, $(grep -c '^W:' "$work/lintian.txt" || true) warnings"
cat "$work/lintian.txt"

# ---- what the packages declare ---------------------------------------------
field() { dpkg-deb -f "$1" "$2"; }
depends=$(field "$cli" Depends)
echo "gpucap Depends: $depends"
case $depends in *libmicrohttpd12*) ;; *) fail "gpucap does not depend on libmicrohttpd12: $depends" ;; esac
case $depends in *"libc6 (>= 2.34)"*) ;; *) fail "gpucap does not depend on libc6 (>= 2.34): $depends" ;; esac
depends=$(field "$preload" Depends)
echo "gpucap-preload Depends: $depends"
case $depends in "libc6 (>= "*")") ;; *) fail "the preload library must depend on libc6 alone: $depends" ;; esac
[ "$(field "$dev" Section)" = libdevel ] || fail "the -dev package is not in section libdevel"

# ---- what they contain -------------------------------------------------------
root=$work/root
for deb in "$cli" "$preload" "$dev"; do
	dpkg-deb -x "$deb" "$root" || fail "dpkg-deb -x $deb failed"
	name=$(field "$deb" Package)
	for f in copyright changelog.gz; do
		[ -f "$root/usr/share/doc/$name/$f" ] || fail "$name lacks /usr/share/doc/$name/$f"
	done
	grep -q '^License: Apache-2.0' "$root/usr/share/doc/$name/copyright" ||
		fail "$name's copyright file does not name Apache-2.0"
done
plugindir=usr/lib/$multiarch/gpucap
for f in usr/bin/gpucap "$plugindir/libgpucap.so" "usr/lib/$multiarch/libgpucap-region.a" \
	"usr/lib/$multiarch/pkgconfig/gpucap-region.pc" usr/include/gpucap/region.h \
	usr/share/gpucap/limits.conf.example usr/share/man/man1/gpucap.1.gz usr/share/man/man1/gpucap-exporter.1.gz \
	usr/share/man/man1/gpucap-cdi.1.gz; do
	[ -e "$root/$f" ] || fail "the packages lack /$f"
done
[ -L "$root/$plugindir/libvgpu.so" ] || fail "/$plugindir/libvgpu.so is not a symbolic link"
[ "$(readlink "$root/$plugindir/libvgpu.so")" = libgpucap.so ] || fail "libvgpu.so does not point at libgpucap.so"
[ ! -x "$root/$plugindir/libgpucap.so" ] || fail "libgpucap.so is executable"
for f in usr/bin/gpucap "$plugindir/libgpucap.so"; do
	if readelf -S "$root/$f" | grep -q '\.debug_info'; then fail "/$f is not stripped"; fi
done
readelf -d "$root/$plugindir/libgpucap.so" | grep NEEDED >"$work/needed.txt"
if grep -v -e 'libc\.so\.6' -e 'ld-linux' -e 'libdl\.so\.2' -e 'libpthread\.so\.0' "$work/needed.txt"; then
	fail "libgpucap.so needs more than the C library"
fi

# ---- use them ------------------------------------------------------------------
out=$("$root/usr/bin/gpucap" --version) || fail "the installed gpucap --version failed"
echo "$out"
case $out in
"gpucap $version (build "*", "*")") ;;
*) fail "unexpected version line: $out" ;;
esac
"$root/usr/bin/gpucap" exporter --help | grep -q '^usage: gpucap exporter' || fail "gpucap exporter --help failed"

# The installed gpucap finds the installed library in its private directory.
"$root/usr/bin/gpucap" doctor --file "$work/none.cache" >"$work/doctor.txt" 2>&1 || true
grep -q "^ok    preload: $root/$plugindir/libgpucap.so is loaded" "$work/doctor.txt" ||
	{ cat "$work/doctor.txt" >&2; fail "the installed gpucap does not preload the installed library"; }

export PKG_CONFIG_PATH="$root/usr/lib/$multiarch/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
flags=$(pkg-config --cflags --libs gpucap-region) || fail "pkg-config --cflags --libs gpucap-region failed"
echo "pkg-config: $flags"
[ "$(pkg-config --modversion gpucap-region)" = "$version" ] || fail "pkg-config reports another version"

cat >"$work/use_region.c" <<'PROGRAM'
#include <gpucap/region.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	struct gpucap_region_options options = {0};
	options.path = argc > 1 ? argv[1] : NULL;
	gpucap_region *region = NULL;
	char err[512] = "";
	if (gpucap_region_attach(&options, &region, err, sizeof(err)) != GPUCAP_OK ||
	    gpucap_region_claim_slot(region, NULL, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int device = gpucap_region_device_register(region, "GPU-package-test", 1u << 30, 0);
	if (device < 0 || gpucap_reserve(region, device, GPUCAP_KIND_DATA, 1u << 20) != GPUCAP_OK)
		return 1;
	struct gpucap_snapshot *s = gpucap_region_snapshot(region);
	printf("devices %u processes %u\n", s ? s->device_count : 0, s ? s->process_count : 0);
	gpucap_snapshot_free(s);
	gpucap_region_detach(region);
	return 0;
}
PROGRAM
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror -o "$work/use_region" "$work/use_region.c" $flags ||
	fail "cannot compile and link against the installed header and library"
got=$("$work/use_region" "$work/region.cache") || fail "the program linked against libgpucap-region.a failed"
[ "$got" = "devices 1 processes 1" ] || fail "unexpected output from the linked program: $got"
"$root/usr/bin/gpucap" status --file "$work/region.cache" >/dev/null ||
	fail "the installed gpucap cannot read the region the linked program wrote"

if [ -n "$keep" ]; then
	rm -rf "$keep"
	mkdir -p "$keep"
	cp "$cli" "$preload" "$dev" "$keep/"
fi
echo "ok package"
