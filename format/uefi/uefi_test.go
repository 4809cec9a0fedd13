package uefi

import (
	"encoding/hex"
	"testing"
)

// TestGUIDs: the well-known GUIDs in their text form and, written out by
// hand from UEFI 2.10 appendix A's layout, in their byte order in memory.
func TestGUIDs(t *testing.T) {
	for _, c := range []struct {
		g        GUID
		str, mem string
	}{
		{GlobalVariableGUID(), "8be4df61-93ca-11d2-aa0d-00e098032b8c", "61dfe48bca93d211aa0d00e098032b8c"},
		{ImageSecurityDatabaseGUID(), "d719b2cb-3d3a-4596-a3bc-dad00e67656f", "cbb219d73a3d9645a3bcdad00e67656f"},
		{KeelVendorGUID(), "6b0af3e3-6409-4fc0-84fe-0076f65a1390", "e3f30a6b0964c04f84fe0076f65a1390"},
		{LoaderGUID(), "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f", "82b0674a4c0acf41b6c7440b29bb8c4f"},
	} {
		if c.g.String() != c.str || hex.EncodeToString(c.g[:]) != c.mem {
			t.Errorf("GUID %s (%x), want %s (%s)", c.g, c.g[:], c.str, c.mem)
		}
		if p, err := ParseGUID(c.str); err != nil || p != c.g {
			t.Errorf("ParseGUID(%s) = %v, %v", c.str, p, err)
		}
	}
	if g, err := ParseGUID("8BE4DF61-93CA-11D2-AA0D-00E098032B8C"); err != nil || g != GlobalVariableGUID() {
		t.Errorf("upper case: %v, %v", g, err)
	}
	for _, bad := range []string{"", "8be4df61-93ca-11d2-aa0d", "8be4df61-93ca-11d2-aa0d-00e098032b8g", "8be4df6193ca11d2aa0d00e098032b8c",
		"{8be4df61-93ca-11d2-aa0d-00e098032b8c}", "8be4df61-93ca-11d2-aa0d-00e098032b8c0", "8be4df61+93ca-11d2-aa0d-00e098032b8c"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeds", bad)
		}
	}
}

func TestVarFile(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{VarFile(DB, ImageSecurityDatabaseGUID()), "db-d719b2cb-3d3a-4596-a3bc-dad00e67656f"},
		{VarFile(PK, GlobalVariableGUID()), "PK-8be4df61-93ca-11d2-aa0d-00e098032b8c"},
		{VarFile(KeelState, KeelVendorGUID()), "KeelState-6b0af3e3-6409-4fc0-84fe-0076f65a1390"},
		{VarFile(LoaderDevicePartUUID, LoaderGUID()), "LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"},
	} {
		if c.got != c.want {
			t.Errorf("VarFile = %s, want %s", c.got, c.want)
		}
	}
}

func FuzzParseGUID(f *testing.F) {
	f.Add("8be4df61-93ca-11d2-aa0d-00e098032b8c")
	f.Add("8BE4DF61-93CA-11D2-AA0D-00E098032B8C")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseGUID(s)
		if err != nil {
			return
		}
		// What parses prints as itself in lower case and parses back.
		if g2, err := ParseGUID(g.String()); err != nil || g2 != g || len(g.String()) != 36 {
			t.Fatalf("%q: %s, %v", s, g, err)
		}
	})
}
