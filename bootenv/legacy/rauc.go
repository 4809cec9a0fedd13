package legacy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/keelboot/keel/bootenv"
)

// RAUCBootOrder is RAUC's list of bootnames in the order they are tried.
const RAUCBootOrder = "BOOT_ORDER"

// RAUCLeft returns the name of the variable holding the boot attempts
// bootname has left: BOOT_<bootname>_LEFT.
func RAUCLeft(bootname string) string { return "BOOT_" + bootname + "_LEFT" }

// RAUCAttempts is RAUC's default boot-attempts and boot-attempts-primary,
// and what its reference script resets the counters to.
const RAUCAttempts = 3

// RAUCMaxLeft is the largest counter ToRAUC writes: one decimal digit, which
// RAUC (hex), setexpr (hex), `test` and bootmeth_rauc (decimal) all read
// the same way.
const RAUCMaxLeft = 9

// parseRAUCCount reads a BOOT_x_LEFT value as RAUC does
// (g_ascii_strtoull(value, NULL, 16)): hexadecimal, optional 0x prefix.
// Decimal digits are accepted too (bootmeth_rauc writes them); for 0-9 both
// readings agree, and larger values only count as "3 or more" here.
func parseRAUCCount(v string) (int, error) {
	digits := v
	if len(v) > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X') {
		digits = v[2:]
	}
	if digits == "" || strings.Trim(digits, "0123456789abcdefABCDEF") != "" {
		return 0, fmt.Errorf("not a number of boot attempts")
	}
	n, err := strconv.ParseUint(digits, 16, 31)
	if err != nil {
		return 0, fmt.Errorf("too large")
	}
	return int(n), nil
}

// FromRAUC builds a keel record from RAUC's U-Boot variables (vars: the
// whole env; only BOOT_ORDER and BOOT_<bootname>_LEFT are read). slots
// maps RAUC bootnames to keel slot names (DefaultRAUCSlots: A=a, B=b). See
// the package documentation for the mapping. The record has generation 1
// and the keel slots in name order.
func FromRAUC(vars map[string]string, slots map[string]string) (bootenv.Record, error) {
	if err := checkRAUCSlots(slots); err != nil {
		return bootenv.Record{}, err
	}
	bad := func(format string, args ...any) (bootenv.Record, error) {
		return bootenv.Record{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	orderVal, ok := vars[RAUCBootOrder]
	if !ok {
		return bad("%s is not set: this env is not in RAUC's layout (RAUC's U-Boot script sets BOOT_ORDER=\"A B\" at its first boot)", RAUCBootOrder)
	}
	var order []string
	in := map[string]bool{}
	for _, name := range strings.Split(orderVal, " ") {
		if name == "" {
			continue // RAUC skips empty words (leading, trailing, doubled spaces)
		}
		if _, ok := slots[name]; !ok {
			return bad("%s=%q names slot %q, which the slot mapping does not map to a keel slot (it maps %s)", RAUCBootOrder, orderVal, name, strings.Join(sortedKeys(slots), ", "))
		}
		if in[name] {
			return bad("%s=%q names slot %s twice", RAUCBootOrder, orderVal, name)
		}
		in[name] = true
		order = append(order, name)
	}
	left := map[string]int{}
	for _, name := range sortedKeys(slots) {
		v, ok := vars[RAUCLeft(name)]
		if !ok {
			if in[name] {
				return bad("%s is not set, but %s=%q lists slot %s: RAUC cannot tell whether it may boot (its U-Boot script sets the counters at its first boot)", RAUCLeft(name), RAUCBootOrder, orderVal, name)
			}
			continue
		}
		n, err := parseRAUCCount(v)
		if err != nil {
			return bad("%s=%q: %v (RAUC writes hexadecimal such as 3 or a; decimal and 0x3 are read too)", RAUCLeft(name), v, err)
		}
		left[name] = n
	}
	primary := -1
	for i, name := range order {
		if left[name] > 0 {
			primary = i
			break
		}
	}
	if primary < 0 {
		var counters []string
		for _, name := range order {
			counters = append(counters, fmt.Sprintf("%s=%d", RAUCLeft(name), left[name]))
		}
		return bad("no slot is bootable (%s=%q, %s): RAUC's script would reset every counter to %d and boot again, keel would boot recovery; set the counter of the slot to boot (for example fw_setenv %s %d) and import again",
			RAUCBootOrder, orderVal, strings.Join(counters, ", "), RAUCAttempts, RAUCLeft(firstBootname(order, slots)), RAUCAttempts)
	}

	byKeel := map[string]bootenv.Slot{}
	r := bootenv.Record{Generation: 1}
	for i, name := range order {
		s := bootenv.Slot{Name: slots[name]}
		switch {
		case i == primary:
			s.State = bootenv.StateGood
			s.Unconfirmed = max(0, RAUCAttempts-left[name])
			r.Active = s.Name
		case i == 0: // ahead of the primary, counter 0
			s.State = bootenv.StateTrial
			r.Trial = s.Name
		case left[name] > 0:
			s.State = bootenv.StateGood
			s.Unconfirmed = max(0, RAUCAttempts-left[name])
		default:
			s.State = bootenv.StateBad
			s.Reason = bootenv.Text(fmt.Sprintf("not bootable in RAUC's BOOT_ORDER/BOOT_x_LEFT: %s=0 (no boot attempts left)", RAUCLeft(name)))
		}
		byKeel[s.Name] = s
	}
	for name, slot := range slots {
		if !in[name] {
			byKeel[slot] = bootenv.Slot{Name: slot, State: bootenv.StateBad,
				Reason: bootenv.Text(fmt.Sprintf("not bootable in RAUC's BOOT_ORDER/BOOT_x_LEFT: %s is not in %s=%q", name, RAUCBootOrder, orderVal))}
		}
	}
	for _, k := range sortedKeys(byKeel) {
		r.Slots = append(r.Slots, byKeel[k])
	}
	if err := r.Validate(); err != nil {
		return bootenv.Record{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return r, nil
}

// firstBootname is the bootname a fix should name: the first in order, else
// the first mapped.
func firstBootname(order []string, slots map[string]string) string {
	if len(order) > 0 {
		return order[0]
	}
	return sortedKeys(slots)[0]
}

// ToRAUC writes keel's record in RAUC's layout: BOOT_ORDER and
// BOOT_<bootname>_LEFT for every mapped slot (slots maps RAUC bootnames to
// keel slots). Slots the mapping leaves out are not written; CheckRAUC
// says whether the result boots what keel would.
func ToRAUC(r bootenv.Record, slots map[string]string) map[string]string {
	byKeel := map[string]string{}
	for name, slot := range slots {
		byKeel[slot] = name
	}
	var order []string
	in := map[string]bool{}
	add := func(slot string) {
		if name, ok := byKeel[slot]; ok && !in[name] {
			in[name] = true
			order = append(order, name)
		}
	}
	if r.Trial != "" {
		add(r.Trial)
	}
	if r.Active != "" {
		add(r.Active)
	}
	for _, s := range r.Slots {
		if s.State == bootenv.StateGood {
			add(s.Name)
		}
	}
	out := map[string]string{}
	for name, slot := range slots {
		n := 0
		if s, ok := r.Slot(slot); ok && in[name] {
			switch s.State {
			case bootenv.StateTrial:
				n = s.TriesLeft
			case bootenv.StateGood:
				n = RAUCAttempts - s.Unconfirmed
			}
		}
		out[RAUCLeft(name)] = strconv.Itoa(min(max(n, 0), RAUCMaxLeft))
	}
	if len(order) == 0 {
		// Nothing can boot: list every slot, each with no attempts left.
		for _, s := range r.Slots {
			add(s.Name)
		}
		for _, name := range sortedKeys(slots) {
			if !in[name] {
				order = append(order, name)
			}
		}
	}
	out[RAUCBootOrder] = strings.Join(order, " ")
	return out
}

// CheckRAUC reports whether ToRAUC(r, slots) expresses keel's next
// decision: the mapping must cover exactly the record's slots, the decision
// must not be recovery (RAUC has none), and the written layout, read back
// with FromRAUC, must boot the same slot.
func CheckRAUC(r bootenv.Record, slots map[string]string) error {
	if err := checkRAUCSlots(slots); err != nil {
		return err
	}
	if err := checkCovers(r, sortedValues(slots), "the slot mapping"); err != nil {
		return err
	}
	d, _ := bootenv.Select(r)
	if d.Recovery() {
		return fmt.Errorf("%w: keel's next boot is recovery (%s); RAUC's layout has no recovery (with no bootable slot its U-Boot script resets every counter and boots again)", ErrInexpressible, d.Reason)
	}
	back, err := FromRAUC(ToRAUC(r, slots), slots)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInexpressible, err)
	}
	if d2, _ := bootenv.Select(back); d2.Slot != d.Slot {
		return fmt.Errorf("%w: keel boots slot %s next (%s), RAUC would boot %s", ErrInexpressible, d.Slot, d.Mode, d2.Slot)
	}
	return nil
}

func sortedValues(m map[string]string) []string {
	var v []string
	for _, k := range sortedKeys(m) {
		v = append(v, m[k])
	}
	return v
}
