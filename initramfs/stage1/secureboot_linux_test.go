//go:build linux

package stage1

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/uefi"
	"github.com/keelboot/keel/secureboot"
)

// TestKexecTrust: with Secure Boot on, a slot kernel must be signed first
// by a certificate of db: the check passes one so signed and refuses an
// unsigned one and one signed by another key, naming the fix; with Secure
// Boot off, or db unreadable, there is no check (the kernel's own stays).
func TestKexecTrust(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "sb")
	if err := secureboot.GenerateKeys(keys, "keel stage1 test"); err != nil {
		t.Fatal(err)
	}
	db, dbKey, _ := secureboot.LoadKey(keys, secureboot.DB)
	kek, kekKey, _ := secureboot.LoadKey(keys, secureboot.KEK)
	stub, err := os.ReadFile("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
	if err != nil {
		t.Fatalf("%v (install systemd-boot-efi: scripts/install-deps.sh does)", err)
	}
	good, err := secureboot.SignKernel(stub, db, dbKey)
	if err != nil {
		t.Fatal(err)
	}
	other, err := secureboot.SignPE(stub, kek, kekKey)
	if err != nil {
		t.Fatal(err)
	}
	efivars := func(secureBoot bool, withDB bool) string {
		dir := t.TempDir()
		g := uefi.GlobalVariableGUID().String()
		sb := byte(0)
		if secureBoot {
			sb = 1
		}
		os.WriteFile(filepath.Join(dir, "SecureBoot-"+g), []byte{6, 0, 0, 0, sb}, 0o644)
		os.WriteFile(filepath.Join(dir, "SetupMode-"+g), []byte{6, 0, 0, 0, 0}, 0o644)
		if withDB {
			b := binary.LittleEndian.AppendUint32(nil, 0x27)
			os.WriteFile(filepath.Join(dir, "db-"+uefi.ImageSecurityDatabaseGUID().String()), append(b, secureboot.SignatureList(db)...), 0o644)
		}
		return dir
	}
	var log bytes.Buffer
	logf := func(format string, args ...any) { fmt.Fprintf(&log, format+"\n", args...) }

	k := readKexecTrust(efivars(true, true), logf)
	if k == nil || !strings.Contains(log.String(), `slot kernels must be signed by db: "keel stage1 test db"`) {
		t.Fatalf("Secure Boot on: %v; log:\n%s", k, log.String())
	}
	if err := k.check(bytes.NewReader(good), int64(len(good))); err != nil {
		t.Errorf("a kernel signed by db: %v", err)
	}
	for name, img := range map[string][]byte{"unsigned": stub, "signed by KEK": other} {
		err := k.check(bytes.NewReader(img), int64(len(img)))
		if !errors.Is(err, secureboot.ErrKexecUnsigned) || !strings.Contains(err.Error(), "secure_boot_keys") {
			t.Errorf("%s kernel: %v", name, err)
		}
	}
	for name, dir := range map[string]string{"Secure Boot off": efivars(false, true), "db unreadable": efivars(true, false)} {
		log.Reset()
		if k := readKexecTrust(dir, logf); k != nil {
			t.Errorf("%s: a check (%v)", name, k)
		}
		if err := (*kexecTrust)(nil).check(bytes.NewReader(stub), int64(len(stub))); err != nil {
			t.Errorf("%s: no check, but %v", name, err)
		}
		if !strings.Contains(log.String(), "Secure Boot") {
			t.Errorf("%s: the log does not say: %q", name, log.String())
		}
	}
}
