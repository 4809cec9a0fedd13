#!/usr/bin/env bash
# update-workloads.sh OUT: the Debian + systemd slot roots of make
# bench-update's update workloads, made with mmdebstrap from Debian's
# packages (the same variant and packages as scripts/debian-root.sh),
# cached in OUT as tar files (each rebuilt only when its mmdebstrap command
# line changes; delete OUT to fetch newer packages):
#
#   OUT/bookworm.tar   bookworm alone (its release, no updates)
#   OUT/security.tar   bookworm + bookworm-updates + bookworm-security
#   OUT/feature.tar    security.tar's sources and packages, plus about
#                      30 MB of new packages (FEATURE_PACKAGES)
#   OUT/bullseye.tar   bullseye (Debian 11): a root with nothing in common
#   OUT/W3-packages.txt  the packages W3 changes: name, old and new
#                      version, installed size in KiB
#
# The workloads (builder/image/peersbench_test.go adds the rest):
#   W1 bookworm -> bookworm with one 1 MiB application file changed
#   W2 bookworm -> bookworm, the slot's kernel and initrd changed
#   W3 bookworm -> security (a security update)
#   W4 security -> feature (a feature update)
#   W5 bullseye -> bookworm (a new root)
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mode=${MMDEBSTRAP_MODE:-}
if [ -z "$mode" ]; then
  if [ "$(id -u)" -eq 0 ]; then mode=root; else mode=unshare; fi
fi
# The packages of W4's feature update: about 30 MB installed.
feature=${FEATURE_PACKAGES:-python3,curl,less,vim-tiny,iproute2}

hook=(--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
common=(
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
)

sha() { sha256sum | cut -d' ' -f1; }

# make NAME SUITE INCLUDE SOURCE...: OUT/NAME.tar unless up to date.
make_root() {
  local name=$1 suite=$2 include=$3
  shift 3
  # bookworm's merged /usr up front (scripts/debian-root.sh says why);
  # bullseye has no usr-is-merged package, and the hook fails there.
  local merged=("${hook[@]}")
  [ "$suite" != bullseye ] || merged=()
  local args=(--variant=essential "${merged[@]}" "${common[@]}" --include="$include" "$suite")
  local key
  key=$(printf '%s\n' "${args[@]}" "$@" | sha)
  if [ -s "$out/$name.tar" ] && [ "$(cat "$out/$name.key" 2>/dev/null)" = "$key" ]; then
    echo "update-workloads: $name.tar is up to date"
    return
  fi
  rm -f "$out/$name.key" "$out/$name.tar.tmp"
  echo "update-workloads: mmdebstrap $name ($suite, $mode mode)"
  local start
  start=$(date +%s)
  mmdebstrap --mode="$mode" --format=tar "${args[@]}" "$out/$name.tar.tmp" "$@"
  mv "$out/$name.tar.tmp" "$out/$name.tar"
  printf '%s\n' "$key" > "$out/$name.key"
  echo "update-workloads: $name.tar $(du -h "$out/$name.tar" | cut -f1) in $(( $(date +%s) - start ))s"
}

base=systemd,systemd-sysv,udev
make_root bookworm bookworm "$base" "deb $mirror bookworm main"
make_root security bookworm "$base" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
make_root feature bookworm "$base,$feature" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
make_root bullseye bullseye "$base" "deb $mirror bullseye main"

# The packages W3 changes, from the two roots' dpkg status.
status() { tar -xOf "$1" ./var/lib/dpkg/status; }
versions() {
  awk '/^Package: /{p=$2} /^Version: /{v=$2} /^Installed-Size: /{s=$2} /^$/{if(p!="")print p, v, s; p=""; v=""; s=""} END{if(p!="")print p, v, s}' | sort
}
status "$out/bookworm.tar" | versions > "$out/.old-versions"
status "$out/security.tar" | versions > "$out/.new-versions"
join -a 2 "$out/.old-versions" "$out/.new-versions" | awk 'NF==5 && $2!=$4 {print $1, $2, $4, $5} NF==3 {print $1, "-", $2, $3}' > "$out/W3-packages.txt.tmp"
rm -f "$out/.old-versions" "$out/.new-versions"
mv "$out/W3-packages.txt.tmp" "$out/W3-packages.txt"
echo "update-workloads: W3 changes $(wc -l < "$out/W3-packages.txt") packages ($out/W3-packages.txt)"
