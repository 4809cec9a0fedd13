package legacy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/keelboot/keel/bootenv"
)

// walkID names every trial and install run of the walk: the legacy
// formats carry neither.
const walkID = "00112233445566778899aabbccddeeff"

// reachable walks every two-slot record reachable from a new device (a
// active, and one with no slot installed) through keel's transitions: boot
// decisions, try (1, 2, 3 and 12 tries), mark-good, mark-bad, set-active,
// confirm, recovery requests, installs and reinstalls. Records that differ
// only in generation, last outcome, last fallback or reasons (which no
// decision reads) are walked once.
func reachable(t *testing.T) []bootenv.Record {
	t.Helper()
	slots := []string{"a", "b"}
	type step func(bootenv.Record) (bootenv.Record, error)
	var steps []step
	steps = append(steps,
		func(r bootenv.Record) (bootenv.Record, error) { _, n := bootenv.Select(r); return n, nil },
		func(r bootenv.Record) (bootenv.Record, error) { return bootenv.RequestRecovery(r, "walk") },
		func(r bootenv.Record) (bootenv.Record, error) { return bootenv.CancelRecovery(r) },
	)
	for _, s := range slots {
		for _, n := range []int{1, 2, 3, 12} {
			steps = append(steps, func(r bootenv.Record) (bootenv.Record, error) { return bootenv.Try(r, s, n, walkID) })
		}
		steps = append(steps,
			func(r bootenv.Record) (bootenv.Record, error) { return bootenv.MarkGood(r, s) },
			func(r bootenv.Record) (bootenv.Record, error) { return bootenv.MarkBad(r, s, "walk") },
			func(r bootenv.Record) (bootenv.Record, error) { return bootenv.SetActive(r, s) },
			func(r bootenv.Record) (bootenv.Record, error) { return bootenv.Confirm(r, s) },
			func(r bootenv.Record) (bootenv.Record, error) { return bootenv.BeginInstall(r, s, "2", walkID) },
			func(r bootenv.Record) (bootenv.Record, error) {
				return bootenv.FinishInstall(r, s, bootenv.Finish{Token: walkID, Version: "2", SecurityVersion: 2, Tries: 2, TrialID: walkID})
			},
			func(r bootenv.Record) (bootenv.Record, error) { return bootenv.BeginReinstall(r, s, "walk") },
			func(r bootenv.Record) (bootenv.Record, error) {
				return bootenv.FinishReinstall(r, s, "1", 1, "2026-01-01T00:00:00Z", "walk")
			},
		)
	}
	key := func(r bootenv.Record) string {
		r = r.Clone()
		r.Generation, r.Last, r.LastRecovery, r.Recovery = 0, bootenv.Outcome{}, "", strconv.FormatBool(r.Recovery != "")
		r.LastFallback = bootenv.Fallback{}
		for i := range r.Slots {
			r.Slots[i].Reason, r.Slots[i].Version, r.Slots[i].SecurityVersion = "", "", 0
		}
		return fmt.Sprintf("%+v", r)
	}
	var queue []bootenv.Record
	seen := map[string]bool{}
	for _, active := range []string{"a", ""} {
		r, err := bootenv.Init(slots, active)
		if err != nil {
			t.Fatal(err)
		}
		seen[key(r)] = true
		queue = append(queue, r)
	}
	for i := 0; i < len(queue); i++ {
		for _, f := range steps {
			n, err := f(queue[i])
			if err != nil {
				continue
			}
			if k := key(n); !seen[k] {
				seen[k] = true
				queue = append(queue, n)
			}
		}
	}
	return queue
}

// describe prints a record in one line for failure messages.
func describe(r bootenv.Record) string {
	var s []string
	for _, sl := range r.Slots {
		s = append(s, sl.Name+"="+slotString(sl))
	}
	return fmt.Sprintf("[%s active=%q trial=%q recovery=%q reinstalling=%q installing=%q]",
		strings.Join(s, " "), r.Active, r.Trial, r.Recovery, r.Reinstalling, r.Installing)
}

// raucScript runs RAUC's reference U-Boot script (contrib/uboot.sh) once
// over vars: the first slot in BOOT_ORDER with attempts left loses one and
// boots; with none it resets the counters and boots nothing ("").
func raucScript(t *testing.T, vars map[string]string) string {
	t.Helper()
	for _, name := range strings.Fields(vars[RAUCBootOrder]) {
		n, err := parseRAUCCount(vars[RAUCLeft(name)])
		if err != nil {
			t.Fatalf("the script reads %s=%q: %v", RAUCLeft(name), vars[RAUCLeft(name)], err)
		}
		if n > 0 {
			vars[RAUCLeft(name)] = strconv.FormatUint(uint64(n-1), 16) // setexpr writes hex
			return name
		}
	}
	return ""
}

// menderBoot runs U-Boot's boot counter and Mender's altbootcmd once over
// vars (drivers/bootcount/bootcount_env.c, env_mender.h) and returns the
// partition booted.
func menderBoot(t *testing.T, vars map[string]string, other map[string]string) string {
	t.Helper()
	if vars[MenderUpgradeAvailable] == "1" {
		count, _ := strconv.Atoi(vars[MenderBootcount])
		limit, _ := strconv.Atoi(vars[MenderBootlimitVar])
		count++
		vars[MenderBootcount] = strconv.Itoa(count)
		if limit > 0 && count > limit { // altbootcmd: run mender_altbootcmd
			vars[MenderBootPart] = other[vars[MenderBootPart]]
			vars[MenderBootPartHex] = vars[MenderBootPart]
			vars[MenderUpgradeAvailable] = "0"
		}
	}
	return vars[MenderBootPart]
}

// TestRoundTripRAUC: for every reachable two-slot record, CheckRAUC refuses
// exactly the records whose next boot is recovery; for the others
// FromRAUC(ToRAUC(r)) boots the same slot in the same mode (a trial boot
// comes back as a normal boot: RAUC's layout has no trial), and RAUC's own
// script, run boot after boot with nobody confirming, boots the same slots
// keel would until keel gives up (recovery), where RAUC finds no slot
// either.
func TestRoundTripRAUC(t *testing.T) {
	m := DefaultRAUCSlots()
	records := reachable(t)
	checked := map[bootenv.Mode]int{}
	for _, r := range records {
		d, _ := bootenv.Select(r)
		err := CheckRAUC(r, m)
		if d.Recovery() {
			if !errors.Is(err, ErrInexpressible) {
				t.Errorf("%s: next boot is recovery, CheckRAUC says %v", describe(r), err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: CheckRAUC: %v", describe(r), err)
			continue
		}
		vars := ToRAUC(r, m)
		back, err := FromRAUC(vars, m)
		if err != nil {
			t.Errorf("%s: ToRAUC wrote %v, FromRAUC: %v", describe(r), vars, err)
			continue
		}
		d2, _ := bootenv.Select(back)
		wantMode := d.Mode
		if wantMode == bootenv.ModeTrial {
			wantMode = bootenv.ModeNormal
		}
		if d2.Slot != d.Slot || d2.Mode != wantMode {
			t.Errorf("%s: keel boots %s (%s), after ToRAUC %v and FromRAUC %s boots %s (%s)", describe(r), d.Slot, d.Mode, vars, describe(back), d2.Slot, d2.Mode)
		}
		checked[d.Mode]++
		// Boot after boot, nobody confirming.
		if s, ok := r.Slot(r.Trial); ok && s.TriesLeft > RAUCMaxLeft {
			continue // capped: RAUC gives up on the trial earlier
		}
		k := r
		for i := range 12 {
			var kd bootenv.Decision
			kd, k = bootenv.Select(k)
			got := raucScript(t, vars)
			if kd.Recovery() {
				if got != "" {
					t.Errorf("%s: boot %d: keel boots recovery, RAUC boots %s", describe(r), i+1, got)
				}
				break
			}
			if want := map[string]string{"a": "A", "b": "B"}[kd.Slot]; got != want {
				t.Errorf("%s: boot %d: keel boots %s (%s), RAUC's script boots %q (%v)", describe(r), i+1, kd.Slot, kd.Mode, got, vars)
				break
			}
		}
	}
	t.Logf("%d reachable records; round trips by mode: %v", len(records), checked)
	for _, mode := range []bootenv.Mode{bootenv.ModeNormal, bootenv.ModeTrial, bootenv.ModeFallback} {
		if checked[mode] == 0 {
			t.Errorf("no record with a %s boot was checked", mode)
		}
	}
}

// TestRoundTripMender: for every reachable two-slot record, CheckMender
// refuses the records whose next boot is recovery or a trial after which
// keel would not fall back to the other slot; for the others FromMender(ToMender(r)) boots the
// same slot in the same mode, and U-Boot's boot counter with Mender's
// altbootcmd boots the same slots as keel for as long as keel's trial
// lasts and at the boot after it.
func TestRoundTripMender(t *testing.T) {
	parts := DefaultMenderParts()
	other := map[string]string{"2": "3", "3": "2"}
	slotOf := map[string]string{"2": "a", "3": "b"}
	records := reachable(t)
	checked := map[bootenv.Mode]int{}
	for _, r := range records {
		for _, limit := range []int{1, 3} {
			d, _ := bootenv.Select(r)
			err := CheckMender(r, parts, limit)
			// After a failed trial Mender boots the other slot: keel must too.
			fallbackOK := true
			if d.Mode == bootenv.ModeTrial {
				after, k := d, r
				for after.Mode == bootenv.ModeTrial {
					after, k = bootenv.Select(k)
				}
				fallbackOK = !after.Recovery() && after.Slot != d.Slot
			}
			if d.Recovery() || !fallbackOK {
				if !errors.Is(err, ErrInexpressible) {
					t.Errorf("%s: next boot %s (%s), CheckMender says %v", describe(r), d.Slot, d.Mode, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: CheckMender: %v", describe(r), err)
				continue
			}
			vars := ToMender(r, parts, limit)
			back, err := FromMender(vars, parts)
			if err != nil {
				t.Errorf("%s: ToMender wrote %v, FromMender: %v", describe(r), vars, err)
				continue
			}
			if d2, _ := bootenv.Select(back); !sameDecision(d, d2) {
				t.Errorf("%s: keel boots %s (%s), after ToMender %v and FromMender %s boots %s (%s)", describe(r), d.Slot, d.Mode, vars, describe(back), d2.Slot, d2.Mode)
			}
			checked[d.Mode]++
			k := r
			for i := range 12 {
				var kd bootenv.Decision
				kd, k = bootenv.Select(k)
				got := slotOf[menderBoot(t, vars, other)]
				if got != kd.Slot {
					t.Errorf("%s (bootlimit %d): boot %d: keel boots %s (%s), U-Boot boots %s (%v)", describe(r), limit, i+1, kd.Slot, kd.Mode, got, vars)
				}
				if kd.Mode != bootenv.ModeTrial {
					break
				}
			}
		}
	}
	t.Logf("%d reachable records; round trips by mode: %v", len(records), checked)
	for _, mode := range []bootenv.Mode{bootenv.ModeNormal, bootenv.ModeTrial, bootenv.ModeFallback} {
		if checked[mode] == 0 {
			t.Errorf("no record with a %s boot was checked", mode)
		}
	}
}

// TestImportThenExport: a layout as RAUC or Mender leaves it is written
// back unchanged by an import followed by an export (the canonical forms).
func TestImportThenExport(t *testing.T) {
	for _, vars := range []map[string]string{
		{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"},
		{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "2"},
		{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
		{"BOOT_ORDER": "A", "BOOT_A_LEFT": "1", "BOOT_B_LEFT": "0"},
	} {
		r, err := FromRAUC(vars, DefaultRAUCSlots())
		if err != nil {
			t.Fatal(err)
		}
		if got := ToRAUC(r, DefaultRAUCSlots()); fmt.Sprint(got) != fmt.Sprint(vars) {
			t.Errorf("RAUC %v: import, export gives %v", vars, got)
		}
	}
	for _, vars := range []map[string]string{
		{"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "0", "bootcount": "0", "bootlimit": "1"},
		{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0", "bootlimit": "1"},
		{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "1", "bootlimit": "1"},
		{"mender_boot_part": "2", "mender_boot_part_hex": "2", "upgrade_available": "1", "bootcount": "1", "bootlimit": "3"},
	} {
		r, err := FromMender(vars, DefaultMenderParts())
		if err != nil {
			t.Fatal(err)
		}
		limit, _ := strconv.Atoi(vars["bootlimit"])
		if got := ToMender(r, DefaultMenderParts(), limit); fmt.Sprint(got) != fmt.Sprint(vars) {
			t.Errorf("Mender %v: import, export gives %v", vars, got)
		}
	}
}
