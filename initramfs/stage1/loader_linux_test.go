//go:build linux

package stage1

import (
	"bytes"
	"testing"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/initramfs/kexec"
)

// TestHandoffFiles: what stage 1 appends to the slot's initrd is
// keel/eventlog.jsonl (0644) when measured, keel/trusted-keys (0444) and
// on a trial's boot keel/trial-id (0444, the id and a newline), byte for
// byte: the names stage 2 copies to /run/keel/eventlog.jsonl,
// /run/keel/trusted-keys and /run/keel/trial-id. An unmeasured boot still
// hands the keys over.
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
	const id = "0123456789abcdef0123456789abcdef"
	check(handoffFiles(Handoff{EventLog: log, TrustedKeys: keys, TrialID: id}),
		kexec.File{Name: "keel/eventlog.jsonl", Perm: 0o644, Data: log},
		kexec.File{Name: "keel/trusted-keys", Perm: 0o444, Data: keys},
		kexec.File{Name: "keel/trial-id", Perm: 0o444, Data: []byte(id + "\n")})
	check(handoffFiles(Handoff{TrustedKeys: keys}),
		kexec.File{Name: "keel/trusted-keys", Perm: 0o444, Data: keys})
	check(handoffFiles(Handoff{}))
}

// TestRandomID: keel-init's ids are ids, and differ.
func TestRandomID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id, err := randomID()
		if err != nil || !bootenv.ValidID(id) || len(id) != 2*bootenv.IDBytes || seen[id] {
			t.Fatalf("randomID() = %q, %v (drawn before: %v)", id, err, seen[id])
		}
		seen[id] = true
	}
}
