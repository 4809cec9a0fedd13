package image

import (
	"bytes"
	"crypto/x509"
	"debug/pe"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/secureboot"
)

// sbverify runs Debian's sbverify --cert cert on a file and returns its
// output and whether it accepted the signature; a missing sbverify fails
// the test (scripts/install-deps.sh installs sbsigntool).
func sbverify(t *testing.T, cert, path string) (string, bool) {
	t.Helper()
	p, err := exec.LookPath("sbverify")
	if err != nil {
		t.Fatalf("sbverify not found: install the Debian package sbsigntool (scripts/install-deps.sh does): %v", err)
	}
	out, err := exec.Command(p, "--cert", cert, path).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// espUKI copies \EFI\BOOT\BOOTX64.EFI out of the ESP of the disk image img
// with mcopy and returns the file.
func espUKI(t *testing.T, img string, off int64) string {
	t.Helper()
	uki := filepath.Join(t.TempDir(), "BOOTX64.EFI")
	command(t, "mcopy", "-i", img+"@@"+strconv.FormatInt(off, 10), "::/EFI/BOOT/BOOTX64.EFI", uki)
	return uki
}

// TestBuildSecureBoot builds the same spec (same seed) without and with
// secure_boot_keys. The signed image's BOOTX64.EFI passes sbverify with
// the db certificate and VerifyPE, and fails both with another
// certificate; the unsigned one has no signature. Apart from the
// signature (the certificate table after the UKI, its data directory
// entry, the PE checksum) the UKIs are the same bytes, with the same
// sections, and every partition but the ESP is identical.
func TestBuildSecureBoot(t *testing.T) {
	fx := newFixture(t)
	keys := filepath.Join(fx.dir, "secureboot")
	if err := secureboot.GenerateKeys(keys, "keel image test"); err != nil {
		t.Fatal(err)
	}
	plainOut := fx.spec.Out
	plainDisk, plainTab := fx.build(t)
	fx.spec.Out = filepath.Join(filepath.Dir(plainOut), "signed.img")
	fx.spec.SecureBootKeys = keys
	fx.spec.NoSecureBoot = false
	fx.spec.KeepKernelSignatures = true // the fixture's kernels are not PE images; TestBuildSecureBootKernels signs PE ones
	disk, tab := fx.build(t)

	esp := find(t, tab, "esp")
	plainUKI := espUKI(t, plainOut, find(t, plainTab, "esp").Offset())
	uki := espUKI(t, fx.spec.Out, esp.Offset())
	command(t, "fsck.vfat", "-n", extract(t, disk, esp))

	if out, ok := sbverify(t, secureboot.CertPath(keys, secureboot.DB), uki); !ok || !strings.Contains(out, "Signature verification OK") {
		t.Errorf("sbverify --cert db.crt BOOTX64.EFI:\n%s", out)
	}
	if out, ok := sbverify(t, secureboot.CertPath(keys, secureboot.PK), uki); ok {
		t.Errorf("sbverify --cert PK.crt accepts BOOTX64.EFI:\n%s", out)
	}
	if out, ok := sbverify(t, secureboot.CertPath(keys, secureboot.DB), plainUKI); ok || !strings.Contains(out, "No signature table present") {
		t.Errorf("sbverify accepts the unsigned build's BOOTX64.EFI:\n%s", out)
	}

	img, _ := os.ReadFile(uki)
	plain, _ := os.ReadFile(plainUKI)
	db, _, err := secureboot.LoadKey(keys, secureboot.DB)
	if err != nil {
		t.Fatal(err)
	}
	kek, _, _ := secureboot.LoadKey(keys, secureboot.KEK)
	if err := secureboot.VerifyPE(img, db); err != nil {
		t.Errorf("VerifyPE(db): %v", err)
	}
	if err := secureboot.VerifyPE(img, kek); !errors.Is(err, secureboot.ErrBadSignature) {
		t.Errorf("VerifyPE(KEK) = %v, want ErrBadSignature", err)
	}
	if err := secureboot.VerifyPE(plain, db); !errors.Is(err, secureboot.ErrUnsigned) {
		t.Errorf("VerifyPE(unsigned build) = %v, want ErrUnsigned", err)
	}
	checkUKI(t, uki, map[string][]byte{
		".osrel":   []byte(DefaultOSRelease),
		".cmdline": []byte("console=ttyS0 keel.store=efivars"),
		".initrd":  fx.keelInitrd,
		".linux":   fx.keelKernel,
	})

	// The signed UKI is the unsigned one plus the signature.
	f, err := pe.Open(uki)
	if err != nil {
		t.Fatal(err)
	}
	dd := f.OptionalHeader.(*pe.OptionalHeader64).DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_SECURITY]
	f.Close()
	if len(img) <= len(plain) || int(dd.VirtualAddress) < len(plain) || int(dd.VirtualAddress) > len(plain)+7 || int(dd.VirtualAddress+dd.Size) != len(img) {
		t.Fatalf("certificate table at %d (%d bytes) in %d bytes; the unsigned UKI has %d", dd.VirtualAddress, dd.Size, len(img), len(plain))
	}
	ts, _ := peTimestampOffset(img)
	sum := ts - 8 + 24 + 64 // CheckSum
	entry := ts - 8 + 24 + 144
	for i := range plain {
		if (i >= sum && i < sum+4) || (i >= entry && i < entry+8) {
			continue
		}
		if img[i] != plain[i] {
			t.Fatalf("byte %d of the UKI differs between the unsigned and the signed build", i)
		}
	}
	if got := binary.LittleEndian.Uint32(img[sum:]); got != peChecksum(img, sum) {
		t.Errorf("the signed UKI's PE checksum %#x is stale", got)
	}

	// Everything but the ESP is the same.
	for _, p := range tab.Partitions {
		if p.Name == "esp" {
			continue
		}
		if !bytes.Equal(readPart(t, disk, p), readPart(t, plainDisk, find(t, plainTab, p.Name))) {
			t.Errorf("partition %s differs between the unsigned and the signed build", p.Name)
		}
	}
	head := make([]byte, esp.Offset())
	plainHead := make([]byte, esp.Offset())
	disk.ReadAt(head, 0)
	plainDisk.ReadAt(plainHead, 0)
	if !bytes.Equal(head, plainHead) {
		t.Error("the GPT differs between the unsigned and the signed build")
	}
}

// TestBuildSecureBootKernels: with secure_boot_keys, the slot kernels (PE
// images here, signed by another key as a distribution ships them) go
// into the slot containers signed first by the db key, as keel-init's
// check before kexec wants them, and the signed manifest has their
// digest; a kernel already signed by the db key goes in as it is (two
// builds, the same bytes); a kernel that is not a PE image is refused
// with the fix; keep_kernel_signatures leaves the kernels as given.
func TestBuildSecureBootKernels(t *testing.T) {
	fx := newFixture(t)
	keys := filepath.Join(fx.dir, "secureboot")
	if err := secureboot.GenerateKeys(keys, "keel image test"); err != nil {
		t.Fatal(err)
	}
	db, dbKey, _ := secureboot.LoadKey(keys, secureboot.DB)
	kek, kekKey, _ := secureboot.LoadKey(keys, secureboot.KEK)
	stub, err := os.ReadFile(DefaultStub)
	if err != nil {
		t.Fatal(err)
	}
	vendor, err := secureboot.SignPE(stub, kek, kekKey)
	if err != nil {
		t.Fatal(err)
	}
	presigned, err := secureboot.SignKernel(stub, db, dbKey)
	if err != nil {
		t.Fatal(err)
	}
	a, b := fx.spec.Slots["a"], fx.spec.Slots["b"]
	writeFile(t, a.Kernel, vendor)
	writeFile(t, b.Kernel, presigned)
	fx.spec.SecureBootKeys = keys
	fx.spec.NoSecureBoot = false
	slotKernel := func(disk *os.File, tab *gpt.Table, slot string) []byte {
		t.Helper()
		sf := bytes.NewReader(readPart(t, disk, find(t, tab, layout.SlotPartition(slot))))
		h, err := slotimg.ReadHeader(sf, sf.Size())
		if err != nil {
			t.Fatal(err)
		}
		k, err := h.Section(sf, slotimg.EntryKernel)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := io.ReadAll(k)
		ms, _ := h.Section(sf, slotimg.EntryManifest)
		mb, _ := io.ReadAll(ms)
		m, err := manifest.Parse(mb)
		if err != nil {
			t.Fatal(err)
		}
		if err := manifest.Check("kernel", bytes.NewReader(kb), m.Kernel); err != nil {
			t.Errorf("slot %s: the manifest's kernel digest: %v", slot, err)
		}
		return kb
	}
	disk, tab := fx.build(t)
	ka, kb := slotKernel(disk, tab, "a"), slotKernel(disk, tab, "b")
	for name, k := range map[string][]byte{"a": ka, "b": kb} {
		if err := secureboot.VerifyKexec(k, []*x509.Certificate{db}); err != nil {
			t.Errorf("slot %s kernel: %v", name, err)
		}
	}
	if err := secureboot.VerifyPE(ka, kek); err == nil {
		t.Error("slot a kernel still carries the vendor's (KEK) signature: the kernel would read that one first")
	}
	if !bytes.Equal(kb, presigned) {
		t.Error("slot b kernel, already signed by db, was signed again")
	}

	fx.spec.Out = filepath.Join(fx.dir, "out", "keep.img")
	fx.spec.KeepKernelSignatures = true
	disk, tab = fx.build(t)
	if !bytes.Equal(slotKernel(disk, tab, "a"), vendor) {
		t.Error("keep_kernel_signatures: slot a kernel changed")
	}

	fx.spec.Out = filepath.Join(fx.dir, "out", "bad.img")
	fx.spec.KeepKernelSignatures = false
	writeFile(t, a.Kernel, []byte("not a PE image"))
	err = Build(t.Context(), fx.spec)
	if err == nil || !strings.Contains(err.Error(), "slot a kernel") || !strings.Contains(err.Error(), "keep_kernel_signatures") {
		t.Errorf("Build with a non-PE kernel: %v", err)
	}
}

// TestSpecSecureBootErrors: secure_boot_keys naming a directory without
// keys, or with a db key others may read, fails Validate with the field
// and the fix; ReadSpec takes the directory relative to the spec file.
func TestSpecSecureBootErrors(t *testing.T) {
	fx := newFixture(t)
	keys := filepath.Join(t.TempDir(), "sb")
	for _, tc := range []struct {
		name  string
		setup func()
		wants []string
	}{
		{"no keys", func() {}, []string{"secure_boot_keys: secureboot: certificate: open " + secureboot.CertPath(keys, secureboot.DB), "keel secureboot keygen --dir DIR"}},
		{"exposed key", func() {
			if err := secureboot.GenerateKeys(keys, ""); err != nil {
				t.Fatal(err)
			}
			os.Chmod(secureboot.KeyPath(keys, secureboot.DB), 0o644)
		}, []string{"secure_boot_keys: secureboot: db key: " + secureboot.KeyPath(keys, secureboot.DB), "chmod 600"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			s := fx.spec
			s.SecureBootKeys = keys
			err := Build(t.Context(), s)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, want := range tc.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
			if _, err := os.Stat(s.Out); err == nil {
				t.Error("a refused spec wrote an image")
			}
		})
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "spec.json")
	writeFile(t, path, []byte(`{"slots": {}, "secure_boot_keys": "keys/sb"}`))
	s, err := ReadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.SecureBootKeys != filepath.Join(dir, "keys/sb") {
		t.Errorf("secure_boot_keys = %q", s.SecureBootKeys)
	}
}

// TestSpecSecureBootRequired: a UEFI image without secure_boot_keys is
// refused unless the spec says no_secure_boot (and not both), naming the
// fix; the refused build writes nothing.
func TestSpecSecureBootRequired(t *testing.T) {
	fx := newFixture(t)
	s := fx.spec
	s.NoSecureBoot = false
	err := Build(t.Context(), s)
	for _, want := range []string{"secure_boot_keys: not given", "keel secureboot keygen --dir DIR", `"no_secure_boot": true`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Build without keys: %v, want %q", err, want)
		}
	}
	if _, err := os.Stat(s.Out); err == nil {
		t.Error("a refused spec wrote an image")
	}
	keys := filepath.Join(t.TempDir(), "sb")
	if err := secureboot.GenerateKeys(keys, ""); err != nil {
		t.Fatal(err)
	}
	s.SecureBootKeys, s.NoSecureBoot = keys, true
	if err := Build(t.Context(), s); err == nil || !strings.Contains(err.Error(), "no_secure_boot and secure_boot_keys: give one of them") {
		t.Errorf("Build with both: %v", err)
	}
}
