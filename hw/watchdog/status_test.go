package watchdog

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseBootStatus(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"0\n", 0, true},
		{"32\n", CardReset, true}, // i6300esb after a watchdog reset in QEMU
		{"32", CardReset, true},
		{"33\n", CardReset | 1, true},
		{"", 0, false},
		{"\n", 0, false},
		{"-1\n", 0, false},
		{"0x20\n", 0, false},
		{"32\n\n", 0, false},
		{" 32\n", 0, false},
		{"4294967296\n", 0, false},
	} {
		got, err := ParseBootStatus([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseBootStatus(%q) = %#x, %v; want %#x (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if CardReset != unix.WDIOF_CARDRESET {
		t.Errorf("CardReset %#x, the kernel's WDIOF_CARDRESET %#x", CardReset, unix.WDIOF_CARDRESET)
	}
}

// FuzzParseBootStatus: whatever the attribute holds, parsing never
// panics, and a value it accepts prints back as the kernel writes it.
func FuzzParseBootStatus(f *testing.F) {
	for _, s := range []string{"0\n", "32\n", "", "-1", "99999999999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseBootStatus(b)
		if err != nil {
			return
		}
		if again, err := ParseBootStatus([]byte(strconv.FormatUint(uint64(v), 10) + "\n")); err != nil || again != v {
			t.Fatalf("%q -> %d -> %d, %v", b, v, again, err)
		}
	})
}
