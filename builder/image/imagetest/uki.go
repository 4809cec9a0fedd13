package imagetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/secureboot"
)

// UKIPath is where the image builder puts keel's UKI on the ESP (the
// removable-media path UEFI firmware boots without a boot entry).
const UKIPath = "::/EFI/BOOT/BOOTX64.EFI"

// UnsignUKI replaces keel's UKI on the ESP of the disk image img by the
// same image without its signatures (secureboot.StripSignatures), as an
// attacker who can write the disk would put an unsigned build there: a
// firmware enforcing Secure Boot must refuse it. It uses mtools (mcopy),
// as the image builder does.
func UnsignUKI(img string) error {
	f, err := os.Open(img)
	if err != nil {
		return fmt.Errorf("imagetest: %w", err)
	}
	tab, err := gpt.ReadFile(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("imagetest: %w", err)
	}
	esp, err := tab.Find(layout.ESP)
	if err != nil {
		return fmt.Errorf("imagetest: %s: %w", img, err)
	}
	fat := img + "@@" + strconv.FormatInt(esp.Offset(), 10)
	tmp, err := os.MkdirTemp("", "keel-uki-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	uki := filepath.Join(tmp, "BOOTX64.EFI")
	if out, err := exec.Command("mcopy", "-i", fat, UKIPath, uki).CombinedOutput(); err != nil {
		return fmt.Errorf("imagetest: mcopy the UKI out: %w\n%s", err, out)
	}
	b, err := os.ReadFile(uki)
	if err != nil {
		return err
	}
	bare, err := secureboot.StripSignatures(b)
	if err != nil {
		return fmt.Errorf("imagetest: %w", err)
	}
	if len(bare) == len(b) {
		return fmt.Errorf("imagetest: the UKI on %s is not signed", img)
	}
	if err := os.WriteFile(uki, bare, 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("mcopy", "-o", "-i", fat, uki, UKIPath).CombinedOutput(); err != nil {
		return fmt.Errorf("imagetest: mcopy the UKI in: %w\n%s", err, out)
	}
	return nil
}
