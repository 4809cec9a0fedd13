#!/usr/bin/env bash
# Installs what keel's tests and demo need on a fresh Debian machine:
# Debian packages (only those missing: the script is idempotent and quick
# when everything is there) and the Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(
  libubootenv-tool   # fw_printenv / fw_setenv: compatibility tests
  u-boot-tools       # mkenvimage: compatibility tests; mkimage: boot.scr of U-Boot boards (image/)
  gdisk              # sgdisk: GPT tests
  mtd-utils          # flash_erase etc. for MTD checks
  cpio               # cpio -itv: initramfs archive tests
  dosfstools         # mkfs.vfat, fsck.vfat: the ESP (image/)
  mtools             # mmd, mcopy, mdir: fill the ESP without root (image/)
  erofs-utils        # mkfs.erofs, fsck.erofs: slot root file systems (image/)
  e2fsprogs          # mkfs.ext4, e2fsck, dumpe2fs: data and ext4 roots (image/)
  systemd-boot-efi   # linuxx64.efi.stub: keel's UKI (image/)
  binutils           # objcopy, objdump: build and check the UKI (image/)
  qemu-system-x86    # the vmtests' machine (TCG)
  ovmf               # UEFI firmware for qemu-x86_64-uefi
  qemu-system-arm    # qemu-system-aarch64: qemu-arm64-uboot's machine (TCG)
  u-boot-qemu        # U-Boot for qemu-arm64-uboot (/usr/lib/u-boot/qemu_arm64/u-boot.bin)
  swtpm              # the vmtests' TPM
  swtpm-tools        # swtpm_setup, swtpm_ioctl
  zstd               # zstd -dc: initramfs tests
  openssl            # openssl dgst: the hashing benchmark's baseline
  cryptsetup-bin     # veritysetup: dm-verity hash tree tests (format/verity)
  tpm2-tools         # tpm2_pcrread: PCR format tests against swtpm (tpm/)
  kmod               # depmod: the modules.dep cross-check (builder/kmod)
  gcc                # builds fake kernel modules for the kmod tests (builder/kmod/kmodtest)
  nginx-light        # nginx: a real server's Range support for the HTTP bundle source (update/source)
  sbsigntool         # sbverify, sbsign: check keel's Authenticode-signed UKI (secureboot/, image/, cli/)
  efitools           # cert-to-efi-sig-list, sign-efi-sig-list: cross-check Secure Boot variables (secureboot/)
  mmdebstrap         # the Debian + systemd slot root (make debian-root: scripts/debian-root.sh)
  debian-archive-keyring # mmdebstrap checks bookworm's Release files with it
  uidmap             # newuidmap: mmdebstrap's unshare mode (make debian-root without root)
  systemd            # systemctl --root (make debian-root), systemd-analyze verify (dist/)
  rauc               # rauc bundle: make bench-update's peer (RAUC's verity bundle)
  mender-artifact    # mender-artifact write rootfs-image: make bench-update's peer (Mender)
  casync             # casync make/extract: make bench-update's peer (content-defined chunking)
  xdelta3            # xdelta3 -e -s: make bench-update's static-diff anchor
  squashfs-tools     # mksquashfs: what rauc bundle packs with
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in fw_printenv fw_setenv mkenvimage mkimage sgdisk qemu-system-x86_64 qemu-system-aarch64 swtpm mkfs.erofs mkfs.vfat mcopy objcopy veritysetup tpm2_pcrread openssl cpio zstd gcc depmod nginx sbverify sbsign cert-to-efi-sig-list sign-efi-sig-list mmdebstrap systemctl systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "install-deps: $tool is still missing" >&2; exit 1; }
done
for f in /usr/lib/u-boot/qemu_arm64/u-boot.bin /usr/share/mmdebstrap/hooks/merged-usr/setup00.sh; do
  [ -s "$f" ] || { echo "install-deps: $f is still missing" >&2; exit 1; }
done
go mod download
