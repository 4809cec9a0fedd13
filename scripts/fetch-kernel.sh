#!/usr/bin/env bash
# fetch-kernel.sh ARCH OUTDIR
#
# Fetches Debian's generic kernel and its modules for ARCH (amd64 or arm64)
# with apt and unpacks them into OUTDIR:
#
#   OUTDIR/root/      the .deb unpacked (dpkg-deb -x)
#   OUTDIR/vmlinuz    the kernel            (symlink into root/boot)
#   OUTDIR/modules    lib/modules/<version> (symlink into root/lib/modules)
#   OUTDIR/version    the kernel version, e.g. 6.1.0-56-amd64
#   OUTDIR/package    the package unpacked, e.g. linux-image-6.1.0-56-amd64=6.1.192-2
#
# The package is resolved at run time from the meta package
# (its Depends, apt-cache show linux-image-ARCH): the ABI number changes with Debian
# point releases. The .deb is kept in a cache folder (KEEL_DEB_CACHE, default
# OUTDIR/../debs) and OUTDIR is re-used when it already holds that package,
# so a second run takes well under a second and needs no network.
#
# A foreign ARCH (arm64 on an amd64 host): apt reads separate package lists
# for it, kept in OUTDIR/../apt-lists-ARCH (fetched once with apt-get update,
# ~10 s); the host's apt state is not touched. Debian's arm64 vmlinuz is an
# uncompressed Image (~32 MB), the amd64 one a bzImage (~8 MB).
set -euo pipefail

usage() { echo "usage: $0 amd64|arm64 OUTDIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
arch=$1
out=$2
case "$arch" in amd64|arm64) ;; *) echo "fetch-kernel: unsupported ARCH '$arch' (want amd64 or arm64)" >&2; exit 2;; esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${KEEL_DEB_CACHE:-$(dirname "$out")/debs}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# One run at a time per OUTDIR (test suites and make demo may start
# together); the second waits, then finds the kernel there.
if command -v flock >/dev/null; then
  exec 9>"$out.lock"
  flock 9
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

# apt options: the host's own lists for the host architecture; for a foreign
# architecture, separate lists so the host's apt state is left alone.
aptopts=()
hostarch=$(dpkg --print-architecture)
if [ "$arch" != "$hostarch" ]; then
  lists="$(dirname "$out")/apt-lists-$arch"
  mkdir -p "$lists/partial"
  aptopts=(-oAPT::Architecture="$arch" -oAPT::Architectures="$arch" -oDir::State::Lists="$lists")
fi

meta=linux-image-$arch
# resolve sets pkg and ver to the concrete package the meta package depends
# on (linux-image-<abi>-ARCH) and its version, or leaves pkg empty when apt
# knows no candidate. One apt-cache call: it is the slow part of a re-run
# (Debian images keep no pkgcache, so each call re-reads the lists), and the
# meta package's Depends pins the version: "linux-image-6.1.0-56-amd64 (= 6.1.192-2)".
resolve() {
  local dep
  dep=$(apt-cache "${aptopts[@]}" show --no-all-versions "$meta" 2>/dev/null | sed -n 's/^Depends: //p' | head -n1 | tr ',' '\n' |
    sed -n "s/^ *\(linux-image-[0-9][^ ]*-$arch\(-unsigned\)\?\)\( (= \([^)]*\))\)\? *\$/\1 \4/p" | head -n1) || true
  pkg=${dep%% *}
  ver=${dep#* }
  if [ -n "$pkg" ] && [ -z "$ver" ]; then
    ver=$(apt-cache "${aptopts[@]}" show --no-all-versions "$pkg" | sed -n 's/^Version: //p' | head -n1) || true
  fi
}
pkg="" ver=""
resolve
if [ -z "$pkg" ]; then
  echo "fetch-kernel: apt knows no $meta for $arch; running apt-get update" >&2
  if [ ${#aptopts[@]} -gt 0 ]; then
    # Foreign lists are ours (under the build folder): no root needed.
    apt-get "${aptopts[@]}" -oDebug::NoLocking=1 update -qq
  else
    $sudo apt-get update -qq
  fi
  resolve
fi
if [ -z "$pkg" ] || [ -z "$ver" ]; then
  echo "fetch-kernel: cannot resolve $meta to a linux-image-<abi>-$arch package (apt-cache show $meta); check that /etc/apt/sources.list has Debian main" >&2
  exit 1
fi
stamp="$pkg=$ver"

if [ -f "$out/package" ] && [ "$(cat "$out/package")" = "$stamp" ] &&
   [ -e "$out/vmlinuz" ] && [ -d "$out/modules/" ] && [ -s "$out/version" ]; then
  echo "fetch-kernel: $stamp already in $out (kernel $(cat "$out/version"))"
  exit 0
fi

# Download into the cache (apt-get download writes into the current folder).
# The debs are named pkg_version_arch.deb with ':' escaped as %3a.
deb=$(ls "$cache/${pkg}_${ver//:/%3a}_${arch}.deb" 2>/dev/null || true)
if [ -z "$deb" ]; then
  echo "fetch-kernel: downloading $stamp ($arch) into $cache"
  (cd "$cache" && apt-get "${aptopts[@]}" -oAPT::Sandbox::User=root -qq download "$pkg=$ver")
  deb=$(ls "$cache/${pkg}_${ver//:/%3a}_${arch}.deb")
fi

# Unpack into a fresh folder, then swap it in, so an interrupted run never
# leaves a half-unpacked tree that a later run would take as complete.
tmp="$out/root.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
dpkg-deb -x "$deb" "$tmp"
kver=$(ls "$tmp/lib/modules" | head -n1)
if [ -z "$kver" ] || [ ! -e "$tmp/boot/vmlinuz-$kver" ]; then
  echo "fetch-kernel: $deb holds no boot/vmlinuz-<version> with lib/modules/<version>" >&2
  exit 1
fi
rm -rf "$out/root" "$out/vmlinuz" "$out/modules" "$out/version" "$out/package"
mv "$tmp" "$out/root"
ln -s "root/boot/vmlinuz-$kver" "$out/vmlinuz"
ln -s "root/lib/modules/$kver" "$out/modules"
echo "$kver" >"$out/version"
echo "$stamp" >"$out/package"
echo "fetch-kernel: kernel $kver in $out ($(du -shL "$out/vmlinuz" | cut -f1) vmlinuz)"
