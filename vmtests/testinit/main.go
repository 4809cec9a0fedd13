// Command testinit is the /sbin/init of the test slot root filesystems the
// vmtests boot. It prints a marker with the slot and version, runs a health
// check whose result the test chose when it built the image
// (/etc/keel-test/health: ok, fail, hang or panic), runs `keel mark-good` when it
// passes, and then takes commands from the serial console:
//
//	keel ARGS...   run the keel CLI; prints KEEL-DONE rc=N
//	race ARGS...   run two keel ARGS at once (two installs racing); prints KEEL-RACE-DONE rc=N,M when both ended
//	status         prints KEEL-STATUS <keel status --json, one line>
//	pcrs BANKS     prints `keel pcr read --banks BANKS`, each line as KEEL-PCR <line>, then KEEL-PCR-END rc=N
//	eventlog       prints /run/keel/eventlog.jsonl, each line as KEEL-EVENTLOG <line>, then KEEL-EVENTLOG-END lines=N
//	trustedkeys    prints /run/keel/trusted-keys as KEEL-TRUSTEDKEYS <octal mode> <hex>, or KEEL-TRUSTEDKEYS-ERROR
//	efivar NAME    prints the efivarfs file NAME (Name-GUID: attributes and data) as KEEL-EFIVAR <hex>, or KEEL-EFIVAR-ERROR
//	tpmattack NAME runs one attack on keel's anti-rollback counter through /dev/tpmrm0 (runTPMAttack: increment-owner,
//	               increment-index, increment-policy, write-record, undefine-owner, undefine-record, redefine-identical,
//	               redefine-v11, inflate); prints
//	               KEEL-TPMATTACK NAME rc=<TPM response code, 0x hex; 0: done; -1: not the TPM's answer> <text>
//	reboot         reboot (the firmware boots keel-init again)
//	poweroff       power off (QEMU exits)
//	crash          crash the kernel (sysrq c): a panic, which pstore keeps; panic=1 reboots
//
// Like an OS with keel's systemd-shutdown hook, it runs `keel
// note-shutdown reboot|poweroff` before it reboots or powers off, so that
// the next keel-init tells the reboot from a power loss.
//
// A failed health check reboots, so a trial counts down by itself; "hang"
// waits forever (the watchdog keel-init armed resets the machine); "panic"
// exits PID 1, which panics the kernel (panic=1 reboots it); "wait" takes
// commands without marking good (the test chooses how the boot ends: a
// crash, a reboot, a hang until the watchdog, a power cut, or keel
// mark-good).
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/cmdline"
	"github.com/keelboot/keel/tpm"
)

func main() {
	mounts()
	line, _ := os.ReadFile("/proc/cmdline")
	h, err := cmdline.ParseHandoff(string(line))
	if err != nil {
		fmt.Printf("KEEL-CMDLINE-ERROR %v\n", err)
	}
	version := readTrim("/etc/keel-test/version")
	fmt.Printf("KEEL-SLOT %s %s mode=%s\n", h.Slot, version, h.Mode)
	switch health := readTrim("/etc/keel-test/health"); health {
	case "fail":
		fmt.Println("KEEL-HEALTH-FAIL: rebooting without mark-good")
		restart(unix.LINUX_REBOOT_CMD_RESTART)
	case "hang":
		fmt.Println("KEEL-HANG: never marks good, never reboots")
		for {
			time.Sleep(time.Hour)
		}
	case "panic":
		fmt.Println("KEEL-PANIC: init exits, the kernel panics")
		os.Exit(1)
	case "wait":
		fmt.Println("KEEL-WAIT: not marking good; the test decides how this boot ends")
	default:
		// The health check reads the whole canary file: on a verity root
		// a corrupted block restarts the machine here.
		if _, err := os.ReadFile("/etc/keel-test/canary"); err != nil {
			fmt.Printf("KEEL-HEALTH-FAIL: %v\n", err)
			restart(unix.LINUX_REBOOT_CMD_RESTART)
		}
		if rc := keel("mark-good"); rc == 0 {
			fmt.Println("KEEL-MARKED-GOOD")
		} else {
			fmt.Printf("KEEL-MARK-GOOD-FAILED rc=%d\n", rc)
		}
	}
	console()
}

func mounts() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"},
		{"efivarfs", "/sys/firmware/efi/efivars", "efivarfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"}, // the kernel's lockdown state
	} {
		if mountPoint(m.dst) {
			continue // moved here by stage 2 (/run holds keel's event log)
		}
		_ = unix.Mount(m.src, m.dst, m.fstype, 0, "")
	}
}

// mountPoint reports whether dir is on another filesystem than its parent.
func mountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(dir+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

func keel(args ...string) int {
	cmd := exec.Command("/bin/keel", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Printf("testinit: %v\n", err)
		return 127
	}
	return 0
}

func console() {
	in := bufio.NewScanner(os.Stdin)
	for {
		fmt.Println("KEEL-READY")
		if !in.Scan() {
			// No console input: idle, so that PID 1 does not exit.
			time.Sleep(time.Hour)
			continue
		}
		line := strings.TrimSpace(in.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "keel":
			fmt.Printf("KEEL-DONE rc=%d\n", keel(f[1:]...))
		case f[0] == "race" && len(f) > 1:
			rcs := make([]int, 2)
			var wg sync.WaitGroup
			for i := range rcs {
				wg.Add(1)
				go func() { defer wg.Done(); rcs[i] = keel(f[1:]...) }()
			}
			wg.Wait()
			fmt.Printf("KEEL-RACE-DONE rc=%d,%d\n", rcs[0], rcs[1])
		case f[0] == "status":
			var out bytes.Buffer
			cmd := exec.Command("/bin/keel", "status", "--json")
			cmd.Stdout, cmd.Stderr = &out, os.Stdout
			_ = cmd.Run()
			var compact bytes.Buffer
			if err := json.Compact(&compact, out.Bytes()); err != nil {
				fmt.Printf("KEEL-STATUS-ERROR %v\n", err)
				continue
			}
			fmt.Printf("KEEL-STATUS %s\n", compact.String())
		case f[0] == "pcrs" && len(f) == 2:
			var out bytes.Buffer
			cmd := exec.Command("/bin/keel", "pcr", "read", "--banks", f[1])
			cmd.Stdout, cmd.Stderr = &out, &out
			rc := 0
			if err := cmd.Run(); err != nil {
				rc = 1
			}
			for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
				fmt.Printf("KEEL-PCR %s\n", l)
			}
			fmt.Printf("KEEL-PCR-END rc=%d\n", rc)
		case f[0] == "eventlog":
			b, err := os.ReadFile("/run/keel/eventlog.jsonl")
			if err != nil {
				fmt.Printf("KEEL-EVENTLOG-ERROR %v\nKEEL-EVENTLOG-END lines=-1\n", err)
				continue
			}
			n := 0
			for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
				fmt.Printf("KEEL-EVENTLOG %s\n", l)
				n++
			}
			fmt.Printf("KEEL-EVENTLOG-END lines=%d\n", n)
		case f[0] == "trustedkeys":
			st, err := os.Stat("/run/keel/trusted-keys")
			var b []byte
			if err == nil {
				b, err = os.ReadFile("/run/keel/trusted-keys")
			}
			if err != nil {
				fmt.Printf("KEEL-TRUSTEDKEYS-ERROR %v\n", err)
			} else {
				fmt.Printf("KEEL-TRUSTEDKEYS %04o %s\n", st.Mode().Perm(), hex.EncodeToString(b))
			}
		case f[0] == "efivar" && len(f) == 2:
			// The raw variable as efivarfs gives it (4 bytes of attributes,
			// then the data), for a check independent of keel's reader.
			b, err := os.ReadFile(filepath.Join("/sys/firmware/efi/efivars", filepath.Base(f[1])))
			if err != nil {
				fmt.Printf("KEEL-EFIVAR-ERROR %v\n", err)
			} else {
				fmt.Printf("KEEL-EFIVAR %s\n", hex.EncodeToString(b))
			}
		case f[0] == "file" && len(f) == 3:
			// file NAME HEX: write /run/NAME (tests pass small files in).
			b, err := hex.DecodeString(f[2])
			if err == nil {
				err = os.WriteFile(filepath.Join("/run", filepath.Base(f[1])), b, 0o644)
			}
			if err != nil {
				fmt.Printf("KEEL-FILE-ERROR %v\n", err)
			} else {
				fmt.Printf("KEEL-FILE %s\n", filepath.Base(f[1]))
			}
		case f[0] == "data":
			data(f[1:])
		case f[0] == "tpmattack" && len(f) == 2:
			tpmAttack(f[1])
		case f[0] == "reboot":
			restart(unix.LINUX_REBOOT_CMD_RESTART)
		case f[0] == "poweroff":
			restart(unix.LINUX_REBOOT_CMD_POWER_OFF)
		case f[0] == "crash":
			fmt.Println("KEEL-CRASH-NOW: sysrq c")
			_ = os.WriteFile("/proc/sys/kernel/sysrq", []byte("1"), 0)
			_ = os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0)
			fmt.Println("testinit: the kernel did not crash")
		default:
			fmt.Printf("KEEL-UNKNOWN %q\n", line)
		}
	}
}

// restart reboots or powers off (cmd), after noting it in keel's record
// as keel's systemd-shutdown hook does.
func restart(cmd int) {
	verb := "reboot"
	if cmd == unix.LINUX_REBOOT_CMD_POWER_OFF {
		verb = "poweroff"
	}
	keel("note-shutdown", verb)
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		fmt.Printf("testinit: reboot: %v\n", err)
	}
	time.Sleep(time.Hour)
}

// data mounts the data partition (GPT name "data", ext4) and writes or
// reads /data/keel-test.txt: "data put TEXT" / "data get" print
// KEEL-DATA <text>, KEEL-DATA-NONE or KEEL-DATA-ERROR.
func data(args []string) {
	dev := ""
	uevents, _ := filepath.Glob("/sys/class/block/*/uevent")
	for _, u := range uevents {
		b, _ := os.ReadFile(u)
		if strings.Contains(string(b), "PARTNAME=data\n") {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "DEVNAME="); ok {
					dev = "/dev/" + v
				}
			}
		}
	}
	os.MkdirAll("/run/data", 0o755)
	if err := unix.Mount(dev, "/run/data", "ext4", 0, ""); err != nil {
		fmt.Printf("KEEL-DATA-ERROR mount %q: %v\n", dev, err)
		return
	}
	defer unix.Unmount("/run/data", 0)
	const file = "/run/data/keel-test.txt"
	switch {
	case len(args) >= 2 && args[0] == "put":
		if err := os.WriteFile(file, []byte(strings.Join(args[1:], " ")), 0o644); err != nil {
			fmt.Printf("KEEL-DATA-ERROR %v\n", err)
			return
		}
		unix.Sync()
		fmt.Printf("KEEL-DATA %s\n", strings.Join(args[1:], " "))
	case len(args) == 1 && args[0] == "get":
		b, err := os.ReadFile(file)
		if err != nil {
			fmt.Println("KEEL-DATA-NONE")
			return
		}
		fmt.Printf("KEEL-DATA %s\n", b)
	default:
		fmt.Println("KEEL-DATA-ERROR usage: data put TEXT | data get")
	}
}

// errUnknownAttack: tpmattack names no attack of runTPMAttack.
var errUnknownAttack = errors.New("unknown attack")

// runTPMAttack runs the attack name: what root in the OS tries against
// keel's anti-rollback counter (tpm.CounterIndex) and floor record
// (tpm.RecordIndex) after keel-init's handoff, with the empty owner
// authorization of a typical device. It returns what it did; an error from
// the TPM is the TPM's answer.
func runTPMAttack(t transport.TPM, name string) (string, error) {
	switch name {
	// TPM2_NV_Increment authorized by the owner.
	case "increment-owner":
		return "TPM2_NV_Increment with owner authorization succeeded", nvIncrement(t, tpm2.TPMRHOwner, tpm.CounterIndex)
	// TPM2_NV_Increment authorized by the index's own empty authValue.
	case "increment-index":
		return "TPM2_NV_Increment with the index's authorization succeeded", nvIncrement(t, tpm2.TPMHandle(tpm.CounterIndex), tpm.CounterIndex)
	// TPM2_NV_Increment under keel's write policy: TPM2_PolicyPCR with
	// PCR 8 all zero (the TPM refuses: PCR 8 holds keel-init's
	// measurements), then under a policy of PCR 8 as it is.
	case "increment-policy":
		return "TPM2_NV_Increment under a policy session succeeded", policyIncrement(t, tpm.CounterIndex)
	// TPM2_NV_Write of a low floor record (0) with the record's authValue.
	case "write-record":
		name, err := nvName(t, tpm.RecordIndex)
		if err != nil {
			return "", err
		}
		_, err = tpm2.NVWrite{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(tpm.RecordIndex), Name: name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(tpm.RecordIndex), Name: name},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: make([]byte, 16)},
		}.Execute(t)
		if err != nil {
			return "", fmt.Errorf("TPM2_NV_Write(%#08x): %w", tpm.RecordIndex, err)
		}
		return "TPM2_NV_Write of the floor record with its authorization succeeded", nil
	// TPM2_NV_UndefineSpace with owner authorization.
	case "undefine-owner":
		before := floor(t)
		if err := nvUndefine(t, tpm.CounterIndex); err != nil {
			return "", err
		}
		return fmt.Sprintf("TPM2_NV_UndefineSpace(%#08x) with owner authorization succeeded (before: %s)", tpm.CounterIndex, before), nil
	case "undefine-record":
		if err := nvUndefine(t, tpm.RecordIndex); err != nil {
			return "", err
		}
		return fmt.Sprintf("TPM2_NV_UndefineSpace(%#08x) with owner authorization succeeded", tpm.RecordIndex), nil
	// After undefine-owner: keel's counter again, the exact public area
	// (tpm.CounterPublic), as a fresh index: not write-locked.
	case "redefine-identical":
		if err := nvDefinePublic(t, tpm.CounterPublic(tpm.CounterIndex, tpm.HierarchyOwner)); err != nil {
			return "", err
		}
		return fmt.Sprintf("defined keel's counter's public area again at %#08x", tpm.CounterIndex), nil
	// After undefine-owner: keel's counter layout of issue 11 (written
	// with its empty authValue), raised redefineCount times.
	case "redefine-v11":
		const redefineCount = 50
		a := tpm2.TPMANV{NT: tpm2.TPMNTCounter, AuthWrite: true, WriteSTClear: true, AuthRead: true, OwnerRead: true, PPRead: true, NoDA: true}
		if err := nvDefine(t, tpm.CounterIndex, a); err != nil {
			return "", err
		}
		for range redefineCount {
			if err := nvIncrement(t, tpm2.TPMHandle(tpm.CounterIndex), tpm.CounterIndex); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("defined keel's counter layout of issue 11 at %#08x and incremented it %d times", tpm.CounterIndex, redefineCount), nil
	// A counter of the OS's own, incremented inflateCount times and
	// undefined: the TPM's highest deleted count (libtpms' maxCount)
	// rises to its value.
	case "inflate":
		const inflateCount = 5
		index := tpm.CounterIndex + 0x100
		if err := nvDefine(t, index, tpm2.TPMANV{NT: tpm2.TPMNTCounter, OwnerWrite: true, OwnerRead: true, NoDA: true}); err != nil {
			return "", err
		}
		for range inflateCount {
			if err := nvIncrement(t, tpm2.TPMRHOwner, index); err != nil {
				return "", err
			}
		}
		name, err := nvName(t, index)
		if err != nil {
			return "", err
		}
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
			Size:       8,
		}.Execute(t)
		if err != nil {
			return "", fmt.Errorf("TPM2_NV_Read(%#08x): %w", index, err)
		}
		if len(rsp.Data.Buffer) != 8 {
			return "", fmt.Errorf("TPM2_NV_Read(%#08x): %d bytes", index, len(rsp.Data.Buffer))
		}
		v := binary.BigEndian.Uint64(rsp.Data.Buffer)
		if err := nvUndefine(t, index); err != nil {
			return "", err
		}
		return fmt.Sprintf("counter %#08x incremented %d times to %d, then undefined", index, inflateCount, v), nil
	default:
		return "", errUnknownAttack
	}
}

// policyIncrement tries TPM2_NV_Increment of index under a policy
// session: first with TPM2_PolicyPCR(SHA-256 PCR 8 = 32 zero bytes),
// keel's write policy, then with TPM2_PolicyPCR of PCR 8 as it is. The
// error of the first is returned first.
func policyIncrement(t transport.TPM, index uint32) error {
	try := func(digest []byte) error {
		sess, done, err := tpm2.PolicySession(t, tpm2.TPMAlgSHA256, 16)
		if err != nil {
			return fmt.Errorf("TPM2_StartAuthSession: %w", err)
		}
		defer done()
		_, err = tpm2.PolicyPCR{PolicySession: sess.Handle(), PcrDigest: tpm2.TPM2BDigest{Buffer: digest},
			Pcrs: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: []byte{0, 1, 0}}}}}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_PolicyPCR: %w", err)
		}
		name, err := nvName(t, index)
		if err != nil {
			return err
		}
		_, err = tpm2.NVIncrement{AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Name: name, Auth: sess},
			NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name}}.Execute(t)
		if err != nil {
			return fmt.Errorf("TPM2_NV_Increment(%#08x): %w", index, err)
		}
		return nil
	}
	zero := sha256.Sum256(make([]byte, sha256.Size))
	first := try(zero[:])
	if first == nil {
		return nil
	}
	if err := try(nil); err != nil {
		return fmt.Errorf("keel's policy: %w; the current PCR 8: %w", first, err)
	}
	return nil
}

// tpmAttack runs runTPMAttack(name) and prints
// KEEL-TPMATTACK NAME rc=CODE TEXT: CODE is the TPM's response code
// (0x hex) that stopped it, 0 when it went through, -1 when it failed
// outside the TPM; TEXT says what happened and, last, the floor that
// keel's reader (tpm.ReadCounter, as in keel install) sees afterwards.
func tpmAttack(name string) {
	rc, text := "-1", ""
	if t, err := tpm.Open(""); err != nil {
		text = err.Error()
	} else {
		done, err := runTPMAttack(t, name)
		var code tpm2.TPMRC
		switch {
		case err == nil:
			rc, text = "0", done
		case errors.As(err, &code):
			rc, text = fmt.Sprintf("%#x", uint32(code)), err.Error()
		default:
			text = err.Error()
		}
		text += "; counter now: " + floor(t)
		t.Close()
	}
	fmt.Printf("KEEL-TPMATTACK %s rc=%s %s\n", name, rc, strings.ReplaceAll(text, "\n", " "))
}

// floor is what tpm.ReadCounter says about keel's counter.
func floor(t transport.TPM) string {
	v, err := tpm.ReadCounter(t, tpm.CounterIndex)
	if err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	return fmt.Sprintf("floor %d", v)
}

// nvName is the NV index's name (TPM2_NV_ReadPublic): it changes once
// the index is written.
func nvName(t transport.TPM, index uint32) (tpm2.TPM2BName, error) {
	rsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(t)
	if err != nil {
		return tpm2.TPM2BName{}, fmt.Errorf("TPM2_NV_ReadPublic(%#08x): %w", index, err)
	}
	return rsp.NVName, nil
}

// nvIncrement is TPM2_NV_Increment authorized by auth (a hierarchy, or
// the index itself) with an empty password.
func nvIncrement(t transport.TPM, auth tpm2.TPMHandle, index uint32) error {
	name, err := nvName(t, index)
	if err != nil {
		return err
	}
	a := tpm2.AuthHandle{Handle: auth, Auth: tpm2.PasswordAuth(nil)}
	if uint32(auth) == index {
		a.Name = name
	}
	_, err = tpm2.NVIncrement{AuthHandle: a, NVIndex: tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name}}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_Increment(%#08x): %w", index, err)
	}
	return nil
}

// nvDefine is TPM2_NV_DefineSpace of an 8-byte index (SHA-256 name, empty
// authValue and policy) with the empty owner authorization.
func nvDefine(t transport.TPM, index uint32, a tpm2.TPMANV) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{NVIndex: tpm2.TPMHandle(index), NameAlg: tpm2.TPMAlgSHA256, Attributes: a, DataSize: 8}),
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_DefineSpace(%#08x): %w", index, err)
	}
	return nil
}

// nvDefinePublic is TPM2_NV_DefineSpace of pub with the empty owner
// authorization.
func nvDefinePublic(t transport.TPM, pub tpm2.TPMSNVPublic) error {
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(pub),
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_DefineSpace(%#08x): %w", uint32(pub.NVIndex), err)
	}
	return nil
}

// nvUndefine is TPM2_NV_UndefineSpace with the empty owner authorization.
func nvUndefine(t transport.TPM, index uint32) error {
	name, err := nvName(t, index)
	if err != nil {
		return err
	}
	_, err = tpm2.NVUndefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: name},
	}.Execute(t)
	if err != nil {
		return fmt.Errorf("TPM2_NV_UndefineSpace(%#08x): %w", index, err)
	}
	return nil
}
