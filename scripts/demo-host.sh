#!/usr/bin/env bash
# A host-side demo of the keel CLI on a redundant U-Boot env file, checked
# with the real U-Boot tools (fw_printenv / fw_setenv from libubootenv).
# Each `keel select --commit` stands for one boot: it is the decision
# keel-init makes, committed before the slot runs.
set -euo pipefail
build=${1:-build}
keel="$(cd "$build" && pwd)/keel"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

truncate -s 32K bootstate.env
printf 'bootstate.env 0x0000 0x4000\nbootstate.env 0x4000 0x4000\n' > fw_env.config
say "A device with a redundant U-Boot env (two 16 KiB copies)"
run cat fw_env.config
run "$keel" -c fw_env.config init --slots a,b --active a
run fw_setenv -c fw_env.config bootdelay 0
say "U-Boot's own tools see keel's state; keel keeps their variables"
run fw_printenv -c fw_env.config

say "Story 1: an update to slot b that commits"
run "$keel" -c fw_env.config try b --tries 3 --version 2.0 --security-version 2
run "$keel" -c fw_env.config select --commit   # boot 1: b on trial
run "$keel" -c fw_env.config mark-good --slot b  # b's health check passed
run "$keel" -c fw_env.config select --commit   # boot 2: b, normal
run "$keel" -c fw_env.config status

say "Story 2: an update to slot a whose health check never passes"
run "$keel" -c fw_env.config try a --tries 2 --version 3.0 --security-version 3
for boot in 1 2 3; do
  printf '# boot %s\n' "$boot"
  run "$keel" -c fw_env.config select --commit
done
run "$keel" -c fw_env.config status
run "$keel" -c fw_env.config status --json

say "A corrupted copy is skipped; both corrupted is a clear error and nothing is written"
printf 'garbage' | dd of=bootstate.env bs=1 seek=100 conv=notrunc status=none
run "$keel" -c fw_env.config status | head -3
printf 'garbage' | dd of=bootstate.env bs=1 seek=$((0x4000 + 100)) conv=notrunc status=none
set +e
"$keel" -c fw_env.config status
echo "exit code: $?"
