// Package dm drives the Linux device-mapper through its ioctls on
// /dev/mapper/control, without dmsetup or libdevmapper: what keel's stage 2
// needs to map a dm-verity root file system in an initramfs without udev.
//
// The interface is include/uapi/linux/dm-ioctl.h (torvalds/linux), version
// 4 of the protocol. Every command passes one buffer: a struct dm_ioctl
// header (312 bytes), then the command's data at data_start, data_size
// bytes in all. The kernel answers in the same buffer. Table loads carry
// target_count × (struct dm_target_spec, 40 bytes, then the NUL-terminated
// params string, padded so that the next spec is 8-byte aligned; "next" is
// the distance from this spec to the next one). Status replies use the same
// specs, but "next" counts from the first spec (dm-ioctl.h, struct
// dm_target_spec).
//
// A device is made in three steps, as dmsetup create does: DM_DEV_CREATE
// (name, uuid -> the device number), DM_TABLE_LOAD (into the inactive
// table), DM_DEV_SUSPEND without DM_SUSPEND_FLAG (resume: the inactive
// table becomes live). Devices are named /dev/dm-<minor>.
package dm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Target is one line of a device-mapper table: Length 512-byte sectors from
// Start, mapped by the target Type ("linear", "verity"...) with Params (the
// rest of the table line). In Status results, Params is the target's status
// line instead.
type Target struct {
	Start, Length uint64
	Type, Params  string
}

// ControlPath is the device-mapper control node.
const ControlPath = "/dev/mapper/control"

// Sizes and limits from dm-ioctl.h.
const (
	sizeofIoctl      = 312 // struct dm_ioctl
	sizeofTargetSpec = 40  // struct dm_target_spec
	nameLen          = 128 // DM_NAME_LEN
	uuidLen          = 129 // DM_UUID_LEN
	maxTypeName      = 16  // DM_MAX_TYPE_NAME
	ioctlMagic       = 0xfd
)

// Command numbers (enum DM_*_CMD), the request being
// _IOWR(DM_IOCTL, cmd, struct dm_ioctl).
const (
	cmdVersion      = 0
	cmdDevCreate    = 3
	cmdDevRemove    = 4
	cmdDevSuspend   = 6
	cmdDevStatus    = 7
	cmdTableLoad    = 9
	cmdTableStatus  = 12
	cmdListVersions = 13
)

var cmdNames = map[uintptr]string{
	cmdVersion: "DM_VERSION", cmdDevCreate: "DM_DEV_CREATE", cmdDevRemove: "DM_DEV_REMOVE",
	cmdDevSuspend: "DM_DEV_SUSPEND", cmdDevStatus: "DM_DEV_STATUS", cmdTableLoad: "DM_TABLE_LOAD",
	cmdTableStatus: "DM_TABLE_STATUS", cmdListVersions: "DM_LIST_VERSIONS",
}

// request is _IOWR(0xfd, cmd, struct dm_ioctl): direction read|write (3)
// in bits 30-31, the size in bits 16-29, the type in 8-15, the number in
// 0-7 (asm-generic/ioctl.h).
func request(cmd uintptr) uintptr {
	return 3<<30 | sizeofIoctl<<16 | ioctlMagic<<8 | cmd
}

// Flags (dm-ioctl.h "Status bits").
const (
	flagReadOnly     = 1 << 0 // DM_READONLY_FLAG
	flagSuspend      = 1 << 1 // DM_SUSPEND_FLAG
	flagStatusTable  = 1 << 4 // DM_STATUS_TABLE_FLAG
	flagBufferFull   = 1 << 8 // DM_BUFFER_FULL_FLAG
	protocolMajor    = 4      // DM_VERSION_MAJOR; minor 0: accepted by every v4 kernel
	statusBufferSize = 16 << 10
)

// header is struct dm_ioctl. Offsets (all fields native endian):
//
//	0   __u32 version[3]
//	12  __u32 data_size     total, header included
//	16  __u32 data_start    offset of the data from the header's start
//	20  __u32 target_count
//	24  __s32 open_count
//	28  __u32 flags
//	32  __u32 event_nr
//	36  __u32 padding
//	40  __u64 dev           huge_encode_dev(): minor low 8 bits, major, minor high bits
//	48  char  name[128]
//	176 char  uuid[129]
//	305 char  data[7]       -> 312
type header struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Dev         uint64
	Name        string
	UUID        string
}

var ne = binary.NativeEndian

func (h *header) encode(b []byte) {
	for i, v := range h.Version {
		ne.PutUint32(b[4*i:], v)
	}
	ne.PutUint32(b[12:], h.DataSize)
	ne.PutUint32(b[16:], h.DataStart)
	ne.PutUint32(b[20:], h.TargetCount)
	ne.PutUint32(b[24:], uint32(h.OpenCount))
	ne.PutUint32(b[28:], h.Flags)
	ne.PutUint32(b[32:], h.EventNr)
	ne.PutUint32(b[36:], 0)
	ne.PutUint64(b[40:], h.Dev)
	clear(b[48:sizeofIoctl])
	copy(b[48:48+nameLen-1], h.Name)
	copy(b[176:176+uuidLen-1], h.UUID)
}

func decodeHeader(b []byte) header {
	var h header
	for i := range h.Version {
		h.Version[i] = ne.Uint32(b[4*i:])
	}
	h.DataSize = ne.Uint32(b[12:])
	h.DataStart = ne.Uint32(b[16:])
	h.TargetCount = ne.Uint32(b[20:])
	h.OpenCount = int32(ne.Uint32(b[24:]))
	h.Flags = ne.Uint32(b[28:])
	h.EventNr = ne.Uint32(b[32:])
	h.Dev = ne.Uint64(b[40:])
	h.Name = cstring(b[48 : 48+nameLen])
	h.UUID = cstring(b[176 : 176+uuidLen])
	return h
}

func cstring(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func align8(n int) int { return (n + 7) &^ 7 }

// encodeTargets is the data of DM_TABLE_LOAD: per target a struct
// dm_target_spec (0 sector_start u64, 8 length u64, 16 status s32, 20 next
// u32, 24 target_type[16]) then the params and a NUL, padded to 8 bytes;
// next is the padded size (from this spec to the next).
func encodeTargets(targets []Target) ([]byte, error) {
	var out []byte
	for i, t := range targets {
		if t.Type == "" || len(t.Type) >= maxTypeName {
			return nil, fmt.Errorf("dm: target %d: type %q must be 1 to %d bytes", i, t.Type, maxTypeName-1)
		}
		if strings.IndexByte(t.Params, 0) >= 0 || strings.IndexByte(t.Type, 0) >= 0 {
			return nil, fmt.Errorf("dm: target %d: NUL byte in type or params", i)
		}
		if t.Length == 0 {
			return nil, fmt.Errorf("dm: target %d: zero length", i)
		}
		size := align8(sizeofTargetSpec + len(t.Params) + 1)
		spec := make([]byte, size)
		ne.PutUint64(spec[0:], t.Start)
		ne.PutUint64(spec[8:], t.Length)
		ne.PutUint32(spec[20:], uint32(size))
		copy(spec[24:24+maxTypeName], t.Type)
		copy(spec[sizeofTargetSpec:], t.Params)
		out = append(out, spec...)
	}
	return out, nil
}

// decodeTargets reads the specs of a DM_TABLE_STATUS reply: data is the
// buffer from data_start on; next counts from the first spec.
func decodeTargets(data []byte, count uint32) ([]Target, error) {
	var targets []Target
	off := 0
	for i := uint32(0); i < count; i++ {
		if off < 0 || off+sizeofTargetSpec > len(data) {
			return nil, fmt.Errorf("dm: status reply: target %d at %d is outside the %d-byte reply", i, off, len(data))
		}
		spec := data[off:]
		t := Target{
			Start:  ne.Uint64(spec[0:]),
			Length: ne.Uint64(spec[8:]),
			Type:   cstring(spec[24 : 24+maxTypeName]),
		}
		params := spec[sizeofTargetSpec:]
		end := strings.IndexByte(string(params), 0)
		if end < 0 {
			return nil, fmt.Errorf("dm: status reply: target %d: unterminated params", i)
		}
		t.Params = string(params[:end])
		targets = append(targets, t)
		next := int(ne.Uint32(spec[20:]))
		if i+1 < count && next <= off {
			return nil, fmt.Errorf("dm: status reply: target %d: next %d does not move forward", i, next)
		}
		off = next
	}
	return targets, nil
}

// control opens /dev/mapper/control, making the node first if it is
// missing (an initramfs without devtmpfs or udev): misc major 10, the minor
// the kernel lists for "device-mapper" in /proc/misc.
func control() (int, error) {
	fd, err := unix.Open(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nil
	}
	if !errors.Is(err, unix.ENOENT) {
		return -1, fmt.Errorf("dm: %s: %w", ControlPath, err)
	}
	minor, merr := miscMinor("device-mapper")
	if merr != nil {
		return -1, fmt.Errorf("dm: %s missing and %w (is dm-mod loaded?)", ControlPath, merr)
	}
	if err := os.MkdirAll(filepath.Dir(ControlPath), 0o755); err != nil {
		return -1, fmt.Errorf("dm: %w", err)
	}
	if err := unix.Mknod(ControlPath, unix.S_IFCHR|0o600, int(unix.Mkdev(10, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("dm: mknod %s: %w", ControlPath, err)
	}
	fd, err = unix.Open(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("dm: %s: %w", ControlPath, err)
	}
	return fd, nil
}

func miscMinor(name string) (uint32, error) {
	f, err := os.Open("/proc/misc")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 2 && fields[1] == name {
			n, err := strconv.ParseUint(fields[0], 10, 32)
			return uint32(n), err
		}
	}
	return 0, fmt.Errorf("no %q in /proc/misc", name)
}

// call runs one ioctl: h, then data, in a buffer of at least size bytes.
// It returns the reply header and the whole reply buffer.
func call(fd int, cmd uintptr, h header, data []byte, size int) (header, []byte, error) {
	size = max(size, align8(sizeofIoctl+len(data)))
	// A []uint64 backing keeps the buffer 8-byte aligned like the C struct.
	words := make([]uint64, size/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
	h.Version = [3]uint32{protocolMajor, 0, 0}
	h.DataSize = uint32(size)
	h.DataStart = sizeofIoctl
	h.encode(buf)
	copy(buf[sizeofIoctl:], data)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), request(cmd), uintptr(unsafe.Pointer(&buf[0])))
	if errno != 0 {
		what := h.Name
		if what == "" {
			what = "control"
		}
		return header{}, nil, fmt.Errorf("dm: %s %s: %w", cmdNames[cmd], what, errno)
	}
	return decodeHeader(buf), buf, nil
}

func checkName(name string) error {
	if name == "" || len(name) >= nameLen || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || name == "control" {
		return fmt.Errorf("dm: invalid device name %q (1 to %d bytes, no '/')", name, nameLen-1)
	}
	return nil
}

// Create makes the device name (uuid may be empty) with targets as its
// table, read-only if readOnly (dm-verity refuses anything else), resumes
// it and returns its node, /dev/dm-<minor>. Missing /dev/dm-<minor> and
// /dev/mapper/<name> nodes are made (the latter a symlink to ../dm-<minor>,
// as udev does), for an initramfs without udev. On error, the device is
// removed again.
func Create(name, uuid string, readOnly bool, targets []Target) (devPath string, err error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	if len(uuid) >= uuidLen || strings.IndexByte(uuid, 0) >= 0 {
		return "", fmt.Errorf("dm: invalid uuid %q (at most %d bytes)", uuid, uuidLen-1)
	}
	if len(targets) == 0 {
		return "", errors.New("dm: no targets")
	}
	table, err := encodeTargets(targets)
	if err != nil {
		return "", err
	}
	fd, err := control()
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)

	if _, _, err := call(fd, cmdDevCreate, header{Name: name, UUID: uuid}, nil, 0); err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			call(fd, cmdDevRemove, header{Name: name}, nil, 0)
		}
	}()
	var flags uint32
	if readOnly {
		flags = flagReadOnly
	}
	if _, _, err := call(fd, cmdTableLoad, header{Name: name, Flags: flags, TargetCount: uint32(len(targets))}, table, 0); err != nil {
		return "", err
	}
	reply, _, err := call(fd, cmdDevSuspend, header{Name: name}, nil, 0) // no DM_SUSPEND_FLAG: resume
	if err != nil {
		return "", err
	}
	return makeNodes(name, reply.Dev)
}

// makeNodes makes /dev/dm-N and /dev/mapper/name if they are missing.
func makeNodes(name string, dev uint64) (string, error) {
	major, minor := unix.Major(dev), unix.Minor(dev)
	devPath := fmt.Sprintf("/dev/dm-%d", minor)
	if err := unix.Mknod(devPath, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("dm: mknod %s: %w", devPath, err)
	}
	link := filepath.Join(filepath.Dir(ControlPath), name)
	if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink("../"+filepath.Base(devPath), link); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("dm: %w", err)
		}
	}
	return devPath, nil
}

// Remove removes the device name (DM_DEV_REMOVE), retrying for a second
// while it is busy (udev or blkid may still hold it), and its
// /dev/mapper/<name> link if it points at the device.
func Remove(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	fd, err := control()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	st, _, err := call(fd, cmdDevStatus, header{Name: name}, nil, 0)
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		_, _, err = call(fd, cmdDevRemove, header{Name: name}, nil, 0)
		if !errors.Is(err, unix.EBUSY) || i == 20 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	link := filepath.Join(filepath.Dir(ControlPath), name)
	if target, err := os.Readlink(link); err == nil && target == fmt.Sprintf("../dm-%d", unix.Minor(st.Dev)) {
		os.Remove(link)
	}
	return nil
}

// Status returns the live table's targets with their status lines in
// Params (DM_TABLE_STATUS): for verity "V" (verified so far) or "C" (a
// corrupted block was found).
func Status(name string) ([]Target, error) { return tableStatus(name, 0) }

// Table returns the live table's targets with their table params
// (DM_TABLE_STATUS with DM_STATUS_TABLE_FLAG), as the kernel prints them.
func Table(name string) ([]Target, error) { return tableStatus(name, flagStatusTable) }

func tableStatus(name string, flags uint32) ([]Target, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	fd, err := control()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	for size := statusBufferSize; ; size *= 2 {
		reply, buf, err := call(fd, cmdTableStatus, header{Name: name, Flags: flags}, nil, size)
		if err != nil {
			return nil, err
		}
		if reply.Flags&flagBufferFull != 0 {
			if size >= 64<<20 {
				return nil, errors.New("dm: status reply does not fit in 64 MiB")
			}
			continue
		}
		end := min(int(reply.DataSize), len(buf))
		if int(reply.DataStart) > end {
			return nil, fmt.Errorf("dm: status reply: data_start %d beyond data_size %d", reply.DataStart, end)
		}
		return decodeTargets(buf[reply.DataStart:end], reply.TargetCount)
	}
}

// Version returns the kernel's device-mapper ioctl interface version
// (DM_VERSION); an error means device-mapper is not usable.
func Version() ([3]uint32, error) {
	fd, err := control()
	if err != nil {
		return [3]uint32{}, err
	}
	defer unix.Close(fd)
	reply, _, err := call(fd, cmdVersion, header{}, nil, 0)
	if err != nil {
		return [3]uint32{}, err
	}
	return reply.Version, nil
}

// TargetTypes returns the target types the kernel has now (modules loaded
// or built in) and their versions (DM_LIST_VERSIONS): "verity" is there
// once dm-verity is loaded.
func TargetTypes() (map[string][3]uint32, error) {
	fd, err := control()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	for size := statusBufferSize; ; size *= 2 {
		reply, buf, err := call(fd, cmdListVersions, header{}, nil, size)
		if err != nil {
			return nil, err
		}
		if reply.Flags&flagBufferFull != 0 && size < 1<<20 {
			continue
		}
		return decodeVersions(buf[reply.DataStart:min(int(reply.DataSize), len(buf))])
	}
}

// decodeVersions reads struct dm_target_versions records: 0 next u32 (from
// this record to the next, 0 for the last), 4 version[3], 16 name (NUL
// terminated).
func decodeVersions(data []byte) (map[string][3]uint32, error) {
	types := map[string][3]uint32{}
	off := 0
	for off+16 < len(data) {
		rec := data[off:]
		name := rec[16:]
		end := strings.IndexByte(string(name), 0)
		if end < 0 {
			return nil, errors.New("dm: target versions: unterminated name")
		}
		types[string(name[:end])] = [3]uint32{ne.Uint32(rec[4:]), ne.Uint32(rec[8:]), ne.Uint32(rec[12:])}
		next := int(ne.Uint32(rec[0:]))
		if next == 0 {
			break
		}
		off += next
	}
	return types, nil
}
