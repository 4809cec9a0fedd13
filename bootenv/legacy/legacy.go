package legacy

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/keelboot/keel/bootenv"
)

// Errors. Wrap-checked with errors.Is.
var (
	// ErrMalformed: the legacy variables are missing, not numbers, or
	// contradict each other; the message names the variable.
	ErrMalformed = errors.New("the legacy boot variables cannot be imported")
	// ErrInexpressible: keel's record has no equivalent in the layout
	// (recovery, say); nothing should be written.
	ErrInexpressible = errors.New("the legacy layout cannot express keel's boot state")
	// ErrMapping: the mapping between legacy and keel slot names is wrong.
	ErrMapping = errors.New("bad slot mapping")
)

// DefaultRAUCSlots maps RAUC's bootnames A and B to keel's slots a and b.
func DefaultRAUCSlots() map[string]string { return map[string]string{"A": "a", "B": "b"} }

// DefaultMenderParts maps Mender's usual root partitions 2 and 3 to keel's
// slots a and b.
func DefaultMenderParts() map[int]string { return map[int]string{2: "a", 3: "b"} }

// ParseRAUCSlots parses a RAUC mapping, "A=a,B=b": RAUC bootname=keel slot.
func ParseRAUCSlots(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		name, slot, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q is not BOOTNAME=SLOT (e.g. A=a,B=b)", ErrMapping, kv)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%w: bootname %q is mapped twice", ErrMapping, name)
		}
		m[name] = slot
	}
	if err := checkRAUCSlots(m); err != nil {
		return nil, err
	}
	return m, nil
}

// ParseMenderParts parses a Mender mapping, "2=a,3=b": partition
// number=keel slot.
func ParseMenderParts(s string) (map[int]string, error) {
	m := map[int]string{}
	for _, kv := range strings.Split(s, ",") {
		num, slot, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: %q is not PARTITION=SLOT (e.g. 2=a,3=b)", ErrMapping, kv)
		}
		n, err := parseDecimal(num)
		if err != nil {
			return nil, fmt.Errorf("%w: partition %q is not a number", ErrMapping, num)
		}
		if _, dup := m[n]; dup {
			return nil, fmt.Errorf("%w: partition %d is mapped twice", ErrMapping, n)
		}
		m[n] = slot
	}
	if err := checkMenderParts(m); err != nil {
		return nil, err
	}
	return m, nil
}

// checkKeelNames checks the keel side of a mapping: valid, distinct slot
// names.
func checkKeelNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if !bootenv.ValidSlotName(n) {
			return fmt.Errorf("%w: keel slot %q: use 1-16 characters a-z, 0-9", ErrMapping, n)
		}
		if seen[n] {
			return fmt.Errorf("%w: keel slot %s is mapped twice", ErrMapping, n)
		}
		seen[n] = true
	}
	return nil
}

func checkRAUCSlots(slots map[string]string) error {
	if len(slots) == 0 {
		return fmt.Errorf("%w: no slots mapped", ErrMapping)
	}
	if len(slots) > bootenv.MaxSlots {
		return fmt.Errorf("%w: %d slots, keel has at most %d", ErrMapping, len(slots), bootenv.MaxSlots)
	}
	var keel []string
	for _, name := range sortedKeys(slots) {
		// The bootname is a word of BOOT_ORDER and part of a variable name.
		if name == "" || strings.ContainsAny(name, " \t\n=\x00\\") || len(name) > 32 {
			return fmt.Errorf("%w: RAUC bootname %q: want a word without spaces or '=' (RAUC's A, B)", ErrMapping, name)
		}
		keel = append(keel, slots[name])
	}
	return checkKeelNames(keel)
}

func checkMenderParts(parts map[int]string) error {
	if len(parts) != 2 {
		return fmt.Errorf("%w: Mender has two root partitions; %d mapped", ErrMapping, len(parts))
	}
	var keel []string
	for _, n := range sortedKeys(parts) {
		if n < 0 {
			return fmt.Errorf("%w: partition %d is negative", ErrMapping, n)
		}
		keel = append(keel, parts[n])
	}
	return checkKeelNames(keel)
}

// checkCovers checks that the record's slots are exactly the mapping's
// keel slots: an export must not leave a slot of either side out.
func checkCovers(r bootenv.Record, keel []string, flag string) error {
	var missing, extra []string
	for _, n := range keel {
		if _, ok := r.Slot(n); !ok {
			missing = append(missing, n)
		}
	}
	for _, n := range r.SlotNames() {
		if !slices.Contains(keel, n) {
			extra = append(extra, n)
		}
	}
	switch {
	case len(missing) > 0:
		return fmt.Errorf("%w: %s maps keel slot(s) %s, which the record does not have (it has %s)", ErrMapping, flag, strings.Join(missing, ", "), strings.Join(r.SlotNames(), ", "))
	case len(extra) > 0:
		return fmt.Errorf("%w: the record's slot(s) %s are not mapped by %s", ErrMapping, strings.Join(extra, ", "), flag)
	}
	return nil
}

func sortedKeys[K int | string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// parseDecimal reads a non-negative decimal number as U-Boot's
// env_get_ulong(name, 10, ...) does for Mender's variables, but strictly:
// digits only.
func parseDecimal(s string) (int, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a decimal number")
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, fmt.Errorf("too large")
	}
	return int(n), nil
}

// sameDecision reports whether two decisions boot the same slot in the
// same mode.
func sameDecision(a, b bootenv.Decision) bool { return a.Slot == b.Slot && a.Mode == b.Mode }
