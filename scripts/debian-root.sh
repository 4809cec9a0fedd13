#!/usr/bin/env bash
# debian-root.sh OUT KEEL: a minimal Debian bookworm root with systemd for
# keel's slots, with keel and its systemd units (dist/systemd), made with
# mmdebstrap from Debian's packages (make debian-root).
#
#   OUT/base.tar   what mmdebstrap made: Essential packages, systemd,
#                  systemd-sysv and udev, no documentation but the
#                  copyright files (about 100 MiB unpacked). Rebuilt only
#                  when the mmdebstrap command line below changes.
#   OUT/root/      the slot root: base.tar unpacked, plus KEEL as
#                  /usr/bin/keel, keel-mark-good.service (enabled), the
#                  watchdog drop-in, the systemd-shutdown hook (keel
#                  note-shutdown), keel-update.timer (enabled) and its
#                  service, and what a read-only (erofs +
#                  dm-verity) root needs: an empty /etc/machine-id,
#                  tmpfs on /var and /tmp, and /data (keel's data
#                  partition). Rebuilt (seconds) when the base,
#                  KEEL, dist/systemd or this script change.
#
# A second run with the same inputs does nothing. The mirror is Debian's
# (DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR override it). As root mmdebstrap
# runs in its root mode; otherwise in unshare mode (user namespaces, the
# uidmap package and subordinate ids in /etc/subuid).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 2 ]; then
  echo "usage: $0 OUT KEEL" >&2
  exit 2
fi
out=$1 keel=$2
[ -x "$keel" ] || { echo "debian-root: $keel: no keel binary (make build)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
mode=${MMDEBSTRAP_MODE:-}
if [ -z "$mode" ]; then
  if [ "$(id -u)" -eq 0 ]; then mode=root; else mode=unshare; fi
fi
# --variant=essential: only the Essential: yes packages and what --include
# pulls in (no apt, no recommends). The merged-usr hook makes the /usr
# merge up front, so that init-system-helpers' "usrmerge | usr-is-merged"
# does not pull usrmerge and with it perl.
base_args=(
  --variant=essential
  --include=systemd,systemd-sysv,udev
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/lintian/*'
  "$suite"
)
sources=(
  "deb $mirror $suite main"
  "deb $mirror $suite-updates main"
  "deb $security $suite-security main"
)

sha() { sha256sum | cut -d' ' -f1; }
base_key=$(printf '%s\n' "${base_args[@]}" "${sources[@]}" | sha)

if [ -s "$out/base.tar" ] && [ "$(cat "$out/base.key" 2>/dev/null)" = "$base_key" ]; then
  echo "debian-root: $out/base.tar is up to date"
else
  command -v mmdebstrap >/dev/null || { echo "debian-root: mmdebstrap is missing (make deps)" >&2; exit 1; }
  rm -f "$out/base.key" "$out/base.tar.tmp"
  echo "debian-root: mmdebstrap $suite ($mode mode) into $out/base.tar"
  start=$(date +%s)
  # The format follows the output's name: a tar (device nodes included,
  # owners kept as numbers).
  mmdebstrap --mode="$mode" --format=tar "${base_args[@]}" "$out/base.tar.tmp" "${sources[@]}"
  mv "$out/base.tar.tmp" "$out/base.tar"
  printf '%s\n' "$base_key" > "$out/base.key"
  echo "debian-root: base.tar $(du -h "$out/base.tar" | cut -f1) in $(( $(date +%s) - start ))s"
fi

units=(
  "$repo/dist/systemd/keel-mark-good.service"
  "$repo/dist/systemd/system.conf.d/keel-watchdog.conf"
  "$repo/dist/systemd/system-shutdown/keel"
  "$repo/dist/systemd/keel-update.service"
  "$repo/dist/systemd/keel-update.timer"
)
root_key=$( { printf '%s\n' "$base_key"; cat "$keel" "$0" "${units[@]}"; } | sha)
root=$out/root
if [ -d "$root" ] && [ "$(cat "$out/root.key" 2>/dev/null)" = "$root_key" ]; then
  echo "debian-root: $root is up to date"
  exit 0
fi
rm -rf "$root" "$root.tmp" "$out/root.key"
mkdir "$root.tmp"
# /dev stays an empty directory: stage 2 moves its devtmpfs there. Owners
# are kept when root unpacks; the erofs image makes every file root's.
tar_owner=(--numeric-owner)
[ "$(id -u)" -eq 0 ] || tar_owner=(--no-same-owner)
tar -C "$root.tmp" "${tar_owner[@]}" -xpf "$out/base.tar" --exclude='./dev/*'

# keel and its units.
install -m 0755 "$keel" "$root.tmp/usr/bin/keel"
install -m 0644 "$repo/dist/systemd/keel-mark-good.service" "$root.tmp/usr/lib/systemd/system/keel-mark-good.service"
install -D -m 0644 "$repo/dist/systemd/system.conf.d/keel-watchdog.conf" "$root.tmp/usr/lib/systemd/system.conf.d/keel-watchdog.conf"
# How this boot ends, for the next keel-init (a reboot, not a power loss).
install -D -m 0755 "$repo/dist/systemd/system-shutdown/keel" "$root.tmp/usr/lib/systemd/system-shutdown/keel"
systemctl --root="$root.tmp" enable keel-mark-good.service
# keel's update agent: the timer checks the channel the image carries
# (/etc/keel/channel; the service does nothing in an image without one),
# 15 minutes after the boot and every 6 hours.
install -m 0644 "$repo/dist/systemd/keel-update.service" "$root.tmp/usr/lib/systemd/system/keel-update.service"
install -m 0644 "$repo/dist/systemd/keel-update.timer" "$root.tmp/usr/lib/systemd/system/keel-update.timer"
systemctl --root="$root.tmp" enable keel-update.timer
# Partitions are keel's business: systemd-gpt-auto-generator would mount
# keel's data partition (type "home") on /home, automount the ESP on
# /boot and make systemd-remount-fs remount the root read-write (it fails:
# erofs). And the TPM's PCR 11 phases (systemd-pcrphase) are not keel's
# measurement: the stub's EFI variables that start them describe keel's
# own UKI, not the slot kernel keel-init measured into PCR 8/9.
mkdir -p "$root.tmp/etc/systemd/system-generators"
ln -sf /dev/null "$root.tmp/etc/systemd/system-generators/systemd-gpt-auto-generator"
systemctl --root="$root.tmp" mask systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-pcrphase-initrd.service

# A read-only root. An empty /etc/machine-id: systemd bind-mounts a
# generated id over it each boot, and the boot is not a first boot
# (machine-id(5)). /var and /tmp are tmpfs (systemd-tmpfiles fills /var).
: > "$root.tmp/etc/machine-id"
# /data: stage 2 mounts keel's data partition there (the booted slot's
# area on /data/slot, the shared area on /data/shared) before systemd
# starts; fstab binds what an application keeps where it expects it.
mkdir -p "$root.tmp/data"
cat > "$root.tmp/etc/fstab" <<'EOF'
# The root is keel's read-only erofs (dm-verity), mounted by keel's stage 2,
# and so is the data partition on /data: /data/slot is this slot's data
# area (it rolls back with the slot), /data/shared the shared one (never).
tmpfs /var tmpfs mode=0755,nosuid,nodev 0 0
tmpfs /tmp tmpfs mode=1777,nosuid,nodev 0 0
# Bind data where the OS expects it, for example:
# /data/slot      /var/lib/myapp    none bind 0 0
# /data/shared    /var/log          none bind 0 0
EOF
# Not the build machine's names.
echo keel > "$root.tmp/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tkeel\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root.tmp/etc/hosts"
: > "$root.tmp/etc/resolv.conf"
# What the build left behind.
rm -rf "$root.tmp"/var/cache/apt/archives/partial "$root.tmp"/var/lib/apt/lists/partial "$root.tmp"/var/log/*.log

mv "$root.tmp" "$root"
printf '%s\n' "$root_key" > "$out/root.key"
echo "debian-root: $root: $(du -sh "$root" | cut -f1), $(find "$root" -xdev | wc -l) files"
