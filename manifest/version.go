package manifest

import (
	"strconv"
	"strings"
	"unicode"
)

// CompareVersions orders two version strings as people read them: split
// into runs of digits and runs of other characters, digit runs compared
// as numbers, others as text; "1.10" > "1.9", "2.0" > "2.0-rc1" is not
// claimed (the longer string wins a tie). It returns -1, 0 or 1.
func CompareVersions(a, b string) int {
	as, bs := versionRuns(a), versionRuns(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		xn, xerr := strconv.ParseUint(x, 10, 64)
		yn, yerr := strconv.ParseUint(y, 10, 64)
		switch {
		case xerr == nil && yerr == nil:
			if xn != yn {
				if xn < yn {
					return -1
				}
				return 1
			}
		case x != y:
			return strings.Compare(x, y)
		}
	}
	switch {
	case len(as) < len(bs):
		return -1
	case len(as) > len(bs):
		return 1
	}
	return 0
}

func versionRuns(s string) []string {
	var runs []string
	start := 0
	for i, r := range s {
		if i > 0 && unicode.IsDigit(r) != unicode.IsDigit(rune(s[i-1])) {
			runs = append(runs, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		runs = append(runs, s[start:])
	}
	return runs
}
