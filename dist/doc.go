// Package dist holds what keel ships for the slots' operating system, not
// Go code: systemd/keel-mark-good.service (the commit of a booted slot after
// boot-complete.target, the systemd-bless-boot convention: a health check is
// any unit ordered Before=boot-complete.target and RequiredBy= it) and
// systemd/system.conf.d/keel-watchdog.conf (systemd leaves the hardware
// watchdog keel-init armed alone; keel mark-good stops it) and
// systemd/system-shutdown/keel (systemd-shutdown's hook: keel
// note-shutdown VERB notes how the boot ends, so that the next keel-init
// tells a reboot from a power loss, docs/DESIGN.md section 3.1).
// systemd/keel-update.service and keel-update.timer are the update agent:
// keel update apply now and then (a random delay, bounded retries, never
// on a trial's boot), its JSON events in the journal.
// scripts/debian-root.sh installs them in the Debian root of make
// debian-root; the tests here check them with systemd-analyze.
package dist
