package gpt

import (
	"bytes"
	"testing"
)

func TestGUID(t *testing.T) {
	const s = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	g, err := ParseGUID(s)
	if err != nil {
		t.Fatal(err)
	}
	// UEFI stores the first three fields little-endian.
	disk := []byte{0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B}
	if !bytes.Equal(g[:], disk) {
		t.Errorf("on-disk bytes % X, want % X", g[:], disk)
	}
	if g.String() != s {
		t.Errorf("String() = %s", g)
	}
	for _, in := range []string{"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "{C12A7328-F81F-11D2-BA4B-00A0C93EC93B}"} {
		if h, err := ParseGUID(in); err != nil || h != g {
			t.Errorf("ParseGUID(%q) = %v, %v", in, h, err)
		}
	}
	rfc := g.RFC4122()
	if rfc[0] != 0xC1 || rfc[15] != 0x3B || GUIDFromRFC4122(rfc) != g {
		t.Errorf("RFC4122 % X", rfc)
	}
	for _, bad := range []string{"", "C12A7328F81F11D2BA4B00A0C93EC93B", "C12A7328-F81F-11D2-BA4B-00A0C93EC93", "G12A7328-F81F-11D2-BA4B-00A0C93EC93B",
		"C12A7328-F81F-11D2-BA4B_00A0C93EC93B", "{C12A7328-F81F-11D2-BA4B-00A0C93EC93B"} {
		if _, err := ParseGUID(bad); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", bad)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("MustParseGUID did not panic")
			}
		}()
		MustParseGUID("nope")
	}()
}

func TestNewGUID(t *testing.T) {
	a, err := NewGUID(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewGUID(nil)
	if a == b || a.IsZero() {
		t.Errorf("two random GUIDs: %v %v", a, b)
	}
	s := a.String()
	if s[14] != '4' || (s[19] != '8' && s[19] != '9' && s[19] != 'A' && s[19] != 'B') {
		t.Errorf("%s is not a version 4, RFC 4122 variant GUID", s)
	}
}

// TestWellKnownTypes pins the type GUIDs to the values of the Discoverable
// Partitions Specification and the UEFI specification. TestReadSgdisk also
// checks them against sgdisk's type codes.
func TestWellKnownTypes(t *testing.T) {
	for _, tc := range []struct {
		got  GUID
		want string
	}{
		{TypeEFISystem(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
		{TypeLinuxGeneric(), "0FC63DAF-8483-4772-8E79-3D69D8477DE4"},
		{TypeRootAMD64(), "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"},
		{TypeRootVerityAMD64(), "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"},
		{TypeRootARM64(), "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"},
		{TypeRootVerityARM64(), "DF3300CE-D69F-4C92-978C-9BFB0F38D820"},
		{TypeHome(), "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"},
		{TypeXBOOTLDR(), "BC13C2FF-59E6-4262-A352-B275FD6F7172"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got %v, want %s", tc.got, tc.want)
		}
	}
}
