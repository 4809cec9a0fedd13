package dm

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/format/verity"
)

// The live* tests create real device-mapper devices over loop devices.
// They need root and a kernel with device-mapper (dm-mod, dm-verity, loop):
// TestInVM runs them as PID 1 of a VM with Debian's kernel, where a missing
// piece is a failure.

func requireDM(t *testing.T, targetTypes ...string) {
	t.Helper()
	skip := t.Fatalf
	if os.Geteuid() != 0 {
		skip("not root")
	}
	v, err := Version()
	if err != nil {
		skip("device-mapper not usable in this kernel: %v", err)
		return
	}
	types, err := TargetTypes()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range targetTypes {
		if _, ok := types[tt]; !ok {
			skip("device-mapper %d.%d.%d has no %q target (have %v)", v[0], v[1], v[2], tt, types)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skip("no loop devices: %v", err)
	}
	t.Logf("device-mapper %d.%d.%d, targets %v", v[0], v[1], v[2], types)
}

// attachLoop attaches path to a free loop device (LOOP_CTL_GET_FREE,
// LOOP_CONFIGURE) and detaches it at the end of the test.
func attachLoop(t *testing.T, path string, readOnly bool) string {
	t.Helper()
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ctl)
	n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
	if err != nil {
		t.Fatalf("LOOP_CTL_GET_FREE: %v", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	if err := unix.Mknod(dev, unix.S_IFBLK|0o600, int(unix.Mkdev(7, uint32(n)))); err != nil && !errors.Is(err, unix.EEXIST) {
		t.Fatalf("mknod %s: %v", dev, err)
	}
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	backing, err := os.OpenFile(path, mode, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer backing.Close()
	loop, err := unix.Open(dev, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(loop)
	cfg := unix.LoopConfig{Fd: uint32(backing.Fd())}
	if readOnly {
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY
	}
	if err := unix.IoctlLoopConfigure(loop, &cfg); err != nil {
		t.Fatalf("LOOP_CONFIGURE %s: %v", dev, err)
	}
	t.Cleanup(func() {
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			unix.Close(fd)
		}
	})
	return dev
}

// readDirect reads size bytes at off from dev with O_DIRECT, past every
// page cache: the read reaches the target (and verity checks it).
func readDirect(dev string, off int64, size int) ([]byte, error) {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(buf)
	for done := 0; done < size; {
		n, err := unix.Pread(fd, buf[done:], off+int64(done))
		if err != nil {
			return nil, fmt.Errorf("read %s at %d: %w", dev, off+int64(done), err)
		}
		if n == 0 {
			return nil, fmt.Errorf("read %s at %d: end of device", dev, off+int64(done))
		}
		done += n
	}
	return bytes.Clone(buf), nil
}

func dropCaches(t *testing.T, devs ...string) {
	t.Helper()
	unix.Sync()
	for _, d := range devs {
		if fd, err := unix.Open(d, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0)
			unix.Close(fd)
		}
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		t.Logf("drop_caches: %v", err)
	}
}

func randomFile(t *testing.T, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, data
}

func removeOnCleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		if _, err := Status(name); err == nil {
			if err := Remove(name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

func liveLinear(t *testing.T) {
	requireDM(t, "linear")
	path, data := randomFile(t, 4<<20)
	loop := attachLoop(t, path, false)
	name := "keel-test-linear"
	removeOnCleanup(t, name)
	// Two targets: the second half first, then the first half.
	half := uint64(len(data) / 2 / 512)
	dev, err := Create(name, "KEEL-TEST-linear", true, []Target{
		{Start: 0, Length: half, Type: "linear", Params: fmt.Sprintf("%s %d", loop, half)},
		{Start: half, Length: half, Type: "linear", Params: loop + " 0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s -> %s", name, dev)
	got, err := readDirect(dev, 0, len(data))
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Clone(data[len(data)/2:]), data[:len(data)/2]...)
	if !bytes.Equal(got, want) {
		t.Fatal("the linear device does not read back the swapped halves")
	}
	if l, err := os.Readlink("/dev/mapper/" + name); err != nil || "/dev/"+filepath.Base(l) != dev {
		t.Errorf("/dev/mapper/%s -> %q, %v; want ../%s", name, l, err, filepath.Base(dev))
	}
	table, err := Table(name)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(loop, &st); err != nil {
		t.Fatal(err)
	}
	loopNum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	if len(table) != 2 || table[0] != (Target{0, half, "linear", fmt.Sprintf("%s %d", loopNum, half)}) || table[1] != (Target{half, half, "linear", loopNum + " 0"}) {
		t.Errorf("Table = %+v", table)
	}
	// Read only: a write fails.
	if fd, err := unix.Open(dev, unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		_, werr := unix.Pwrite(fd, make([]byte, 512), 0)
		unix.Close(fd)
		if werr == nil {
			t.Error("wrote to a read-only device")
		}
	}
	if _, err := Create(name, "", true, []Target{{Length: 1, Type: "zero"}}); !errors.Is(err, unix.EBUSY) {
		t.Errorf("second Create of %s: %v, want EBUSY", name, err)
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := Status(name); !errors.Is(err, unix.ENXIO) {
		t.Errorf("Status after Remove: %v, want ENXIO", err)
	}
	if _, err := os.Lstat("/dev/mapper/" + name); err == nil {
		t.Errorf("/dev/mapper/%s still there", name)
	}
}

// keel's root partition layout: the file system, then the hash tree at a
// 4 KiB boundary of the same device.
func liveVerity(t *testing.T) {
	requireDM(t, "verity")
	for _, sb := range []bool{false, true} {
		t.Run(fmt.Sprintf("superblock=%v", sb), func(t *testing.T) { testVerity(t, sb) })
	}
}

func testVerity(t *testing.T, superblock bool) {
	const blocks = 1024 // 4 MiB
	path, data := randomFile(t, blocks*4096)
	salt := make([]byte, 32)
	rand.Read(salt)
	p := verity.Params{Salt: salt, DataBlocks: blocks, HashOffset: blocks * 4096, Superblock: superblock}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	root, _, err := verity.Build(f, int64(len(data)), f, p)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	loop := attachLoop(t, path, true)
	name := "keel-test-verity"
	removeOnCleanup(t, name)

	sectors, params := verity.TargetParams(loop, loop, p, root)
	targets := []Target{{Start: 0, Length: sectors, Type: "verity", Params: params}}

	// dm-verity refuses a writable table; Create removes the half-made device.
	if _, err := Create(name, "", false, targets); err == nil {
		t.Fatal("a writable verity table was accepted")
	}
	if _, err := Status(name); !errors.Is(err, unix.ENXIO) {
		t.Fatalf("after a failed Create: Status %v, want ENXIO", err)
	}

	dev, err := Create(name, "KEEL-VERITY-test", true, targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s -> %s: %s", name, dev, verity.Table(loop, loop, p, root))
	if st := verityStatus(t, name); st != "V" {
		t.Fatalf("status %q before any read, want V", st)
	}
	got, err := readDirect(dev, 0, len(data))
	if err != nil {
		t.Fatalf("reading the verified device: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the verity device does not read back the data")
	}
	if st := verityStatus(t, name); st != "V" {
		t.Fatalf("status %q after a full read, want V", st)
	}

	// Flip one byte of data block 700 in the backing file.
	const bad = 700
	bf, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bf.WriteAt([]byte{data[bad*4096+10] ^ 1}, bad*4096+10); err != nil {
		t.Fatal(err)
	}
	bf.Sync()
	bf.Close()
	dropCaches(t, dev, loop)

	if _, err := readDirect(dev, (bad-1)*4096, 4096); err != nil {
		t.Errorf("block %d (intact): %v", bad-1, err)
	}
	if _, err := readDirect(dev, bad*4096, 4096); !errors.Is(err, unix.EIO) {
		t.Fatalf("block %d (corrupted): %v, want EIO", bad, err)
	}
	if st := verityStatus(t, name); st != "C" {
		t.Fatalf("status %q after reading a corrupted block, want C", st)
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
}

func verityStatus(t *testing.T, name string) string {
	t.Helper()
	st, err := Status(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].Type != "verity" {
		t.Fatalf("Status = %+v", st)
	}
	return strings.Fields(st[0].Params + " ")[0]
}

// An initramfs without devtmpfs or udev: /dev is an empty tmpfs. Create
// makes /dev/mapper/control (from /proc/misc), /dev/dm-N and the
// /dev/mapper/<name> link itself. Only as PID 1 of the test VM: it mounts
// over /dev.
func liveNoDevtmpfs(t *testing.T) {
	if os.Getpid() != 1 {
		t.Fatal("mounts over /dev: only in the test VM (TestInVM)")
	}
	requireDM(t, "linear")
	path, data := randomFile(t, 1<<20)
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Unmount("/dev", unix.MNT_DETACH); err != nil {
			t.Errorf("umount /dev: %v", err)
		}
	}()
	lc, err := miscMinor("loop-control")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod("/dev/loop-control", unix.S_IFCHR|0o600, int(unix.Mkdev(10, lc))); err != nil {
		t.Fatal(err)
	}
	loop := attachLoop(t, path, true)
	name := "keel-test-nodev"
	dev, err := Create(name, "", true, []Target{{Length: uint64(len(data) / 512), Type: "linear", Params: loop + " 0"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ControlPath, dev} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s not made: %v", p, err)
		}
	}
	if l, err := os.Readlink("/dev/mapper/" + name); err != nil || l != "../"+filepath.Base(dev) {
		t.Errorf("/dev/mapper/%s -> %q, %v", name, l, err)
	}
	got, err := readDirect("/dev/mapper/"+name, 0, len(data))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("read back differs")
	}
	if err := Remove(name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat("/dev/mapper/" + name); err == nil {
		t.Errorf("/dev/mapper/%s still there", name)
	}
}
