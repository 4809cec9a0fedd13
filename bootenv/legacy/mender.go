package legacy

import (
	"fmt"
	"strconv"

	"github.com/keelboot/keel/bootenv"
)

// Mender's U-Boot variables.
const (
	MenderBootPart         = "mender_boot_part"
	MenderBootPartHex      = "mender_boot_part_hex"
	MenderUpgradeAvailable = "upgrade_available"
	MenderBootcount        = "bootcount"
	MenderBootlimitVar     = "bootlimit"
)

// MenderBootlimit is the bootlimit Mender's U-Boot integration sets: one
// boot of an update, then altbootcmd.
const MenderBootlimit = 1

// FromMender builds a keel record from Mender's U-Boot variables (vars: the
// whole env). parts maps Mender's two root partition numbers to keel slots
// (DefaultMenderParts: 2=a, 3=b). See the package documentation for the
// mapping. The record has generation 1 and the slots in partition order.
func FromMender(vars map[string]string, parts map[int]string) (bootenv.Record, error) {
	if err := checkMenderParts(parts); err != nil {
		return bootenv.Record{}, err
	}
	bad := func(format string, args ...any) (bootenv.Record, error) {
		return bootenv.Record{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	v, ok := vars[MenderBootPart]
	if !ok {
		return bad("%s is not set: this env is not in Mender's layout", MenderBootPart)
	}
	part, err := parseDecimal(v)
	if err != nil {
		return bad("%s=%q: %v (Mender writes the partition number in decimal)", MenderBootPart, v, err)
	}
	booted, ok := parts[part]
	if !ok {
		return bad("%s=%d is not one of the partitions the mapping maps (%d, %d)", MenderBootPart, part, sortedKeys(parts)[0], sortedKeys(parts)[1])
	}
	if h, ok := vars[MenderBootPartHex]; ok {
		n, err := strconv.ParseUint(h, 16, 31)
		if err != nil || int(n) != part {
			return bad("%s=%d but %s=%q: U-Boot would load the kernel from one partition and mount the root file system of another; fix one of them", MenderBootPart, part, MenderBootPartHex, h)
		}
	}
	var other string
	var otherPart int
	for n, slot := range parts {
		if n != part {
			other, otherPart = slot, n
		}
	}
	upgrade := false
	switch u, ok := vars[MenderUpgradeAvailable]; {
	case !ok || u == "0": // U-Boot reads a missing value as 0
	case u == "1":
		upgrade = true
	default:
		return bad("%s=%q: want 0 or 1", MenderUpgradeAvailable, u)
	}
	r := bootenv.Record{Generation: 1}
	var bootedSlot, otherSlot bootenv.Slot
	if !upgrade {
		bootedSlot = bootenv.Slot{Name: booted, State: bootenv.StateGood}
		otherSlot = bootenv.Slot{Name: other, State: bootenv.StateEmpty,
			Reason: bootenv.Text(fmt.Sprintf("imported from Mender: partition %d is not booted and Mender keeps no state for it (a previous release or a rolled-back update); install an update into it", otherPart))}
		r.Active = booted
	} else {
		lv, ok := vars[MenderBootlimitVar]
		if !ok {
			return bad("%s=1 but %s is not set: U-Boot's boot counter is off, the update would never fall back; keel has no endless trial (set %s=%d, Mender's value)", MenderUpgradeAvailable, MenderBootlimitVar, MenderBootlimitVar, MenderBootlimit)
		}
		limit, err := parseDecimal(lv)
		if err != nil {
			return bad("%s=%q: %v", MenderBootlimitVar, lv, err)
		}
		if limit == 0 {
			return bad("%s=1 but %s=0: U-Boot's boot counter is off, the update would never fall back; keel has no endless trial (set %s=%d, Mender's value)", MenderUpgradeAvailable, MenderBootlimitVar, MenderBootlimitVar, MenderBootlimit)
		}
		count := 0
		if cv, ok := vars[MenderBootcount]; ok {
			if count, err = parseDecimal(cv); err != nil {
				return bad("%s=%q: %v", MenderBootcount, cv, err)
			}
		}
		tries := max(0, limit-count)
		if tries > bootenv.MaxTries {
			return bad("%s=%d and %s=%d leave %d boots of the update; keel gives a trial at most %d", MenderBootlimitVar, limit, MenderBootcount, count, tries, bootenv.MaxTries)
		}
		bootedSlot = bootenv.Slot{Name: booted, State: bootenv.StateTrial, TriesLeft: tries}
		otherSlot = bootenv.Slot{Name: other, State: bootenv.StateGood}
		r.Trial, r.Active = booted, other
	}
	if part < otherPart {
		r.Slots = []bootenv.Slot{bootedSlot, otherSlot}
	} else {
		r.Slots = []bootenv.Slot{otherSlot, bootedSlot}
	}
	if err := r.Validate(); err != nil {
		return bootenv.Record{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r, nil
}

// ToMender writes keel's next decision in Mender's layout: mender_boot_part,
// mender_boot_part_hex, upgrade_available, bootcount and bootlimit. parts
// maps the two partition numbers to keel slots; bootlimit is the limit to
// write (below 1: MenderBootlimit), raised when a trial has more tries. A
// slot the mapping leaves out is not written; CheckMender says whether the
// result boots what keel would.
func ToMender(r bootenv.Record, parts map[int]string, bootlimit int) map[string]string {
	limit := bootlimit
	if limit < 1 {
		limit = MenderBootlimit
	}
	partOf := map[string]int{}
	for n, slot := range parts {
		partOf[slot] = n
	}
	d, _ := bootenv.Select(r)
	slot, upgrade, count := d.Slot, false, 0
	switch d.Mode {
	case bootenv.ModeTrial:
		s, _ := r.Slot(d.Slot)
		limit = max(limit, s.TriesLeft)
		upgrade, count = true, limit-s.TriesLeft
	case bootenv.ModeFallback:
		// An update of the other slot with no boots left: U-Boot's
		// altbootcmd switches to d.Slot at the next boot.
		for _, s := range r.Slots {
			if s.Name != d.Slot {
				slot = s.Name
			}
		}
		upgrade, count = true, limit
	case bootenv.ModeNormal:
	default: // recovery: not expressible (CheckMender refuses it)
		slot = r.Active
	}
	out := map[string]string{
		MenderUpgradeAvailable: "0",
		MenderBootcount:        strconv.Itoa(count),
		MenderBootlimitVar:     strconv.Itoa(limit),
	}
	if upgrade {
		out[MenderUpgradeAvailable] = "1"
	}
	if n, ok := partOf[slot]; ok {
		out[MenderBootPart] = strconv.Itoa(n)
		out[MenderBootPartHex] = fmt.Sprintf("%X", n) // as the Mender client writes it
	}
	return out
}

// CheckMender reports whether ToMender(r, parts, bootlimit) expresses
// keel's next decision: the mapping must cover exactly the record's two
// slots, the decision must not be recovery, once a trial fails keel must
// fall back to the other slot (which Mender's altbootcmd boots then), and
// the written layout, read back with FromMender, must give the same
// decision.
func CheckMender(r bootenv.Record, parts map[int]string, bootlimit int) error {
	if err := checkMenderParts(parts); err != nil {
		return err
	}
	var keel []string
	for _, n := range sortedKeys(parts) {
		keel = append(keel, parts[n])
	}
	if err := checkCovers(r, keel, "the partition mapping"); err != nil {
		return err
	}
	d, _ := bootenv.Select(r)
	if d.Recovery() {
		return fmt.Errorf("%w: keel's next boot is recovery (%s); Mender's layout has no recovery", ErrInexpressible, d.Reason)
	}
	if d.Mode == bootenv.ModeTrial {
		// Once the trial fails Mender's altbootcmd boots the other slot:
		// keel must fall back to it too.
		other := ""
		for _, s := range r.Slots {
			if s.Name != d.Slot {
				other = s.Name
			}
		}
		after, k := d, r
		for after.Mode == bootenv.ModeTrial {
			after, k = bootenv.Select(k)
		}
		if after.Slot != other {
			return fmt.Errorf("%w: slot %s is on trial; once it fails Mender's altbootcmd would boot slot %s, keel would boot %s (%s); export when slot %s is good and confirmed, or when the trial has ended",
				ErrInexpressible, d.Slot, other, after, after.Reason, other)
		}
	}
	back, err := FromMender(ToMender(r, parts, bootlimit), parts)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInexpressible, err)
	}
	if d2, _ := bootenv.Select(back); !sameDecision(d, d2) {
		return fmt.Errorf("%w: keel boots slot %s next (%s), Mender would boot %s (%s)", ErrInexpressible, d.Slot, d.Mode, d2.Slot, d2.Mode)
	}
	return nil
}
