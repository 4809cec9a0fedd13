//go:build linux

package stage1

import (
	"bytes"
	"testing"

	"github.com/keelboot/keel/initramfs/kexec"
)

// TestHandoffFiles: what stage 1 appends to the slot's initrd is
// keel/eventlog.jsonl (0644) when measured and keel/trusted-keys (0444),
// byte for byte: the names stage 2 copies to /run/keel/eventlog.jsonl and
// /run/keel/trusted-keys. An unmeasured boot still hands the keys over.
func TestHandoffFiles(t *testing.T) {
	log := []byte(`{"pcr":8,"type":"keel.separator"}` + "\n")
	keys := []byte("keel-ed25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= ci\n")
	check := func(got []kexec.File, want ...kexec.File) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("files %+v, want %+v", got, want)
		}
		for i := range want {
			if got[i].Name != want[i].Name || got[i].Perm != want[i].Perm || !bytes.Equal(got[i].Data, want[i].Data) {
				t.Errorf("file %d: %s %#o %q, want %s %#o %q", i, got[i].Name, got[i].Perm, got[i].Data, want[i].Name, want[i].Perm, want[i].Data)
			}
		}
	}
	check(handoffFiles(Handoff{EventLog: log, TrustedKeys: keys}),
		kexec.File{Name: "keel/eventlog.jsonl", Perm: 0o644, Data: log},
		kexec.File{Name: "keel/trusted-keys", Perm: 0o444, Data: keys})
	check(handoffFiles(Handoff{TrustedKeys: keys}),
		kexec.File{Name: "keel/trusted-keys", Perm: 0o444, Data: keys})
	check(handoffFiles(Handoff{}))
}
