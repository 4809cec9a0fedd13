// Command bootcheck is a test PID 1 for initramfs's QEMU test: it loads
// the modules /etc/keel/modules.order lists, in order, with finit_module,
// checks each shows up in /sys/module (ENODEV, a module for hardware the
// VM lacks, is counted, not fatal), prints a marker the test waits for and
// powers off.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	err := run()
	if err != nil {
		fmt.Printf("BOOTCHECK-FAIL %v\n", err)
	}
	unix.Sync()
	time.Sleep(100 * time.Millisecond)
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func run() error {
	if err := unix.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mount /sys: %w", err)
	}
	f, err := os.Open("/etc/keel/modules.order")
	if err != nil {
		return err
	}
	defer f.Close()
	n, nodev := 0, 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		p := strings.TrimSpace(s.Text())
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		m, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(m.Fd()), "", 0)
		m.Close()
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
		if err == unix.ENODEV {
			// No such hardware: crc32c-intel on a CPU without SSE4.2
			// (QEMU's TCG). modprobe reports it and goes on; so do we.
			fmt.Printf("BOOTCHECK-NODEV %s\n", name)
			nodev++
			continue
		}
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("finit_module %s: %w", p, err)
		}
		if _, err := os.Stat("/sys/module/" + name); err != nil {
			return fmt.Errorf("after loading %s: %w", p, err)
		}
		fmt.Printf("BOOTCHECK-LOADED %s\n", name)
		n++
	}
	if err := s.Err(); err != nil {
		return err
	}
	fmt.Printf("BOOTCHECK-OK %d modules loaded, %d without their device\n", n, nodev)
	return nil
}
