package ubootenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
)

// area is where one copy lives.
type area struct {
	name       string // device path, for messages
	dev        Device
	off        int64 // offset in dev, resolved (never negative)
	sectorSize int64 // erase unit; 0 when the device needs no erase
	sectors    int64 // sectors the copy may use (>= the sectors it needs)
	size       int64 // size of the copy, header included
	devSize    int64
	roErr      error // non-nil: the device is read-only, and why
}

// Storage is a configured U-Boot env: one copy, or two (redundant). It is
// not safe for concurrent use; a Storage made by Open also takes
// libubootenv's lock file around each Read and Write, so fw_printenv and
// fw_setenv do not run in the middle of one.
type Storage struct {
	areas    []area
	size     int64 // size of one copy, header included
	flags    FlagKind
	files    []*os.File // opened by Open, closed by Close
	lockPath string
	owned    bool // Config.Owned
}

// Open opens the devices of cfg. Regular files and block devices get
// counter flags; an MTD character device is asked MEMGETINFO: NOR gets
// boolean flags, NAND counter flags, both get erase-before-write (and bad
// block skipping on NAND). A device that cannot be opened for writing is
// opened read-only: Read works, Write fails saying so.
func Open(cfg *Config) (*Storage, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ubootenv: %w", err)
	}
	var ops []*opened
	closeAll := func() {
		for _, o := range ops {
			o.file.Close()
		}
	}
	for _, dc := range cfg.Copies {
		o, err := openPath(dc.Path)
		if err != nil {
			closeAll()
			return nil, err
		}
		ops = append(ops, o)
	}
	flags := FlagCounter
	if ops[0].kind == kindNOR {
		flags = FlagBoolean
	}
	if len(ops) == 2 {
		// libubootenv check_compatible_devices: same MTD type and flag type.
		mtd := func(k devKind) bool { return k == kindNOR || k == kindNAND }
		if k0, k1 := ops[0].kind, ops[1].kind; k0 != k1 && (mtd(k0) || mtd(k1)) {
			closeAll()
			return nil, fmt.Errorf("ubootenv: the copies are on a %v (%s) and a %v (%s); both must be the same kind of storage (libubootenv requires it)", k0, cfg.Copies[0].Path, k1, cfg.Copies[1].Path)
		}
	}
	devs := make([]Device, len(ops))
	for i, o := range ops {
		devs[i] = o.dev
		if o.kind == kindNAND && o.writeSize > 0 && cfg.Copies[i].Size%o.writeSize != 0 {
			closeAll()
			return nil, fmt.Errorf("ubootenv: %s: env size 0x%x is not a multiple of the NAND page size 0x%x — fix the size in fw_env.config", cfg.Copies[i].Path, cfg.Copies[i].Size, o.writeSize)
		}
	}
	same := func(i, j int) bool {
		a, errA := ops[i].file.Stat()
		b, errB := ops[j].file.Stat()
		return errA == nil && errB == nil && os.SameFile(a, b)
	}
	s, err := newStorage(cfg, devs, flags, same)
	if err != nil {
		closeAll()
		return nil, err
	}
	for i, o := range ops {
		s.areas[i].roErr = o.roErr
		s.files = append(s.files, o.file)
	}
	s.lockPath = lockFile
	return s, nil
}

// OpenDevices makes a Storage over devices the caller opened: devs[i] holds
// cfg.Copies[i] (whose Path is then only a name for messages). For tests
// with fault injection, and for an env inside a disk image (NewFileDevice).
// Close does not close the devices.
func OpenDevices(cfg *Config, devs []Device, flags FlagKind) (*Storage, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ubootenv: %w", err)
	}
	if len(devs) != len(cfg.Copies) {
		return nil, fmt.Errorf("ubootenv: %d devices for %d copies", len(devs), len(cfg.Copies))
	}
	if flags != FlagCounter && flags != FlagBoolean {
		return nil, fmt.Errorf("ubootenv: unknown flag kind %d", int(flags))
	}
	same := func(i, j int) bool {
		a, b := devs[i], devs[j]
		if a == nil || b == nil || reflect.TypeOf(a) != reflect.TypeOf(b) || !reflect.TypeOf(a).Comparable() {
			return false
		}
		return a == b
	}
	return newStorage(cfg, devs, flags, same)
}

func newStorage(cfg *Config, devs []Device, flags FlagKind, same func(i, j int) bool) (*Storage, error) {
	s := &Storage{size: cfg.Copies[0].Size, flags: flags, owned: cfg.Owned}
	for i, dc := range cfg.Copies {
		if devs[i] == nil {
			return nil, fmt.Errorf("ubootenv: no device for copy %d (%s)", i+1, dc.Path)
		}
		a, err := newArea(dc, devs[i])
		if err != nil {
			return nil, err
		}
		s.areas = append(s.areas, a)
	}
	if len(s.areas) == 2 && same(0, 1) {
		a, b := s.areas[0], s.areas[1]
		if a.off < b.off+b.span() && b.off < a.off+a.span() {
			what := "bytes"
			if a.sectorSize > 0 {
				what = "erase blocks (a power cut while erasing one copy would destroy both)"
			}
			return nil, fmt.Errorf("ubootenv: the two copies in %s overlap: [0x%x, +0x%x) and [0x%x, +0x%x) share %s — fix the offsets in fw_env.config",
				a.name, a.off, a.span(), b.off, b.span(), what)
		}
	}
	return s, nil
}

func newArea(dc DeviceConfig, dev Device) (area, error) {
	a := area{name: dc.Path, dev: dev, size: dc.Size}
	size, err := dev.Size()
	if err != nil {
		return a, fmt.Errorf("ubootenv: %s: %w", dc.Path, err)
	}
	a.devSize = size
	a.off = dc.Offset
	if a.off < 0 {
		// libubootenv check_env_device: a negative offset counts back from
		// the end of the device.
		a.off += size
		if a.off < 0 {
			return a, fmt.Errorf("ubootenv: %s: offset %d is before the start of the 0x%x-byte device — fix the offset in fw_env.config", dc.Path, dc.Offset, size)
		}
	}
	if e, ok := dev.(eraser); ok && e.EraseSize() > 0 {
		es := e.EraseSize()
		a.sectorSize = dc.SectorSize
		if a.sectorSize == 0 {
			a.sectorSize = es // libubootenv: sector size defaults to mtdinfo.erasesize
		}
		if a.sectorSize%es != 0 {
			return a, fmt.Errorf("ubootenv: %s: sector size 0x%x is not a multiple of the erase block size 0x%x — fix the sector size in fw_env.config", dc.Path, a.sectorSize, es)
		}
		if a.off%es != 0 {
			return a, fmt.Errorf("ubootenv: %s: offset 0x%x is not aligned to the erase block size 0x%x — fix the offset in fw_env.config", dc.Path, a.off, es)
		}
		need := (dc.Size + a.sectorSize - 1) / a.sectorSize
		a.sectors = max(int64(dc.Sectors), need)
	}
	if a.off+a.span() > size {
		return a, fmt.Errorf("ubootenv: %s is 0x%x bytes, smaller than offset 0x%x + 0x%x — fix the offset or size in fw_env.config (sizes there are hexadecimal)", dc.Path, size, a.off, a.span())
	}
	return a, nil
}

// span is how much of the device the copy occupies: its size, or on flash
// its whole sectors (spares included).
func (a *area) span() int64 {
	if a.sectorSize > 0 {
		return a.sectors * a.sectorSize
	}
	return a.size
}

// Redundant reports whether the env has two copies.
func (s *Storage) Redundant() bool { return len(s.areas) == 2 }

// Close closes the devices that Open opened.
func (s *Storage) Close() error {
	var errs []error
	for _, f := range s.files {
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.files = nil
	return errors.Join(errs...)
}

func (s *Storage) lock() func() {
	if s.lockPath == "" {
		return func() {}
	}
	return lockEnv(s.lockPath)
}

func (s *Storage) where(i int) string {
	a := &s.areas[i]
	if s.Redundant() {
		return fmt.Sprintf("copy %d (%s at 0x%x)", i+1, a.name, a.off)
	}
	return fmt.Sprintf("%s at 0x%x", a.name, a.off)
}

// names lists the copies' devices, for messages.
func (s *Storage) names() string {
	n := make([]string, len(s.areas))
	for i := range s.areas {
		n[i] = s.where(i)
	}
	return strings.Join(n, " and ")
}

// chunk is a piece of a copy at a physical offset.
type chunk struct{ off, n int64 }

// chunks maps a copy onto its device: one piece for files and block
// devices; for flash one piece per sector, skipping bad NAND blocks within
// the copy's sectors (libubootenv mtdread/mtdwrite, U-Boot env/nand.c).
func (s *Storage) chunks(a *area) ([]chunk, error) {
	if a.sectorSize == 0 {
		return []chunk{{a.off, s.size}}, nil
	}
	bb, _ := a.dev.(badBlocker)
	var cs []chunk
	left := s.size
	for i := int64(0); i < a.sectors && left > 0; i++ {
		off := a.off + i*a.sectorSize
		if bb != nil {
			bad, err := bb.IsBadBlock(off)
			if err != nil {
				return nil, err
			}
			if bad {
				continue
			}
		}
		n := min(left, a.sectorSize)
		cs = append(cs, chunk{off, n})
		left -= n
	}
	if left > 0 {
		return nil, fmt.Errorf("not enough good blocks in %d sector(s) of 0x%x at 0x%x — raise the number of sectors in fw_env.config", a.sectors, a.sectorSize, a.off)
	}
	return cs, nil
}

func (s *Storage) readArea(a *area) ([]byte, error) {
	cs, err := s.chunks(a)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, s.size)
	p := int64(0)
	for _, c := range cs {
		if err := readFull(a.dev, buf[p:p+c.n], c.off); err != nil {
			return nil, err
		}
		p += c.n
	}
	return buf, nil
}

// writeArea writes a whole copy: on flash, erase then write sector by
// sector (libubootenv mtdwrite); then Sync, then read it back.
func (s *Storage) writeArea(a *area, img []byte) error {
	cs, err := s.chunks(a)
	if err != nil {
		return err
	}
	p := int64(0)
	for _, c := range cs {
		if a.sectorSize > 0 {
			if err := a.dev.Erase(c.off, a.sectorSize); err != nil {
				return fmt.Errorf("erase: %w", err)
			}
		}
		if err := writeFull(a.dev, img[p:p+c.n], c.off); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		p += c.n
	}
	if err := a.dev.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	back, err := s.readArea(a)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if !bytes.Equal(back, img) {
		return fmt.Errorf("read back differs from what was written (bad flash, or the device needs an erase it did not get)")
	}
	return nil
}

// load reads and checks every copy.
func (s *Storage) load() []copyState {
	st := make([]copyState, len(s.areas))
	for i := range s.areas {
		raw, err := s.readArea(&s.areas[i])
		if err != nil {
			st[i] = copyState{readErr: err}
			continue
		}
		st[i] = decodeCopy(raw, s.Redundant())
	}
	return st
}

// Read returns the current env: the only valid copy, or for two valid
// copies the one the flags pick. It fails with ErrBlank when nothing was
// ever written, ErrCorrupt when no copy is valid (with the likely cause
// when the CRC matches at another size or layout), or the I/O error when
// no copy could be read.
func (s *Storage) Read() (*Env, error) {
	defer s.lock()()
	st := s.load()
	i := current(s.flags, st)
	if i < 0 {
		return nil, s.noValidCopy(st)
	}
	return st[i].env, nil
}

// noValidCopy explains why no copy is valid.
func (s *Storage) noValidCopy(st []copyState) error {
	var readErrs []string
	blank := 0
	for i, c := range st {
		switch {
		case c.readErr != nil:
			readErrs = append(readErrs, fmt.Sprintf("%s: %v", s.where(i), c.readErr))
		case isBlank(c.raw):
			blank++
		}
	}
	if len(readErrs) == len(st) {
		return fmt.Errorf("ubootenv: cannot read the env: %s", strings.Join(readErrs, "; "))
	}
	if blank == len(st) {
		return fmt.Errorf("ubootenv: env in %s: %w: every copy is erased (all 0xFF or all 0x00), nothing was ever written", s.names(), ErrBlank)
	}
	var parts []string
	for i, c := range st {
		switch {
		case c.readErr != nil:
			parts = append(parts, fmt.Sprintf("%s: read error: %v", s.where(i), c.readErr))
		case isBlank(c.raw):
			parts = append(parts, fmt.Sprintf("%s: blank", s.where(i)))
		default:
			msg := fmt.Sprintf("%s: %v", s.where(i), c.bad)
			if hint := s.probe(i); hint != "" {
				msg += "; " + hint
			}
			parts = append(parts, msg)
		}
	}
	return fmt.Errorf("ubootenv: %w: %s", ErrCorrupt, strings.Join(parts, "; "))
}

// misconfigured reports whether a probe of a failing copy found the env at
// another size or layout: then writing with the configured geometry would
// destroy an env U-Boot can still read.
func (s *Storage) misconfigured(st []copyState) bool {
	for i, c := range st {
		if c.readErr == nil && !c.valid() && !isBlank(c.raw) && s.probe(i) != "" {
			return true
		}
	}
	return false
}

// Write commits e as the whole env, in one write of a whole copy:
//
//   - redundant, counter flags: to the copy that is not current, with the
//     current flag plus one (libubootenv libuboot_env_store);
//   - redundant, boolean flags: to the copy that is not current, with flag
//     1, then the current copy's flag is cleared to 0 in place (U-Boot
//     env/flash.c env_flash_save; libubootenv set_obsolete_flag);
//   - single copy: over the only copy. This is not power-safe: a cut in the
//     middle leaves no valid env (Read returns ErrCorrupt).
//
// Each copy is synced and read back before the old copy is touched. When
// no copy is valid (first write), copy 1 gets flag 1, as U-Boot does.
// Nothing is written when the env does not fit (ErrTooLarge), a device is
// read-only, no copy can be read, or no copy is valid but one would be at
// another size or layout (the config is wrong; see Read's error).
func (s *Storage) Write(e *Env) error {
	if e == nil {
		return fmt.Errorf("ubootenv: Write of a nil *Env (pass &Env{} for an empty env)")
	}
	hdr := headerSize(s.Redundant())
	if _, err := encodeData(e, int(s.size)-hdr); err != nil {
		return fmt.Errorf("ubootenv: env for %s (size 0x%x): %w", s.names(), s.size, err)
	}
	for i := range s.areas {
		if err := s.areas[i].roErr; err != nil {
			return fmt.Errorf("ubootenv: cannot write the env: %s is read-only (%w) — run as root, or make it writable (for an eMMC boot partition: echo 0 > /sys/class/block/<dev>/force_ro)", s.areas[i].name, err)
		}
	}
	defer s.lock()()
	st := s.load()
	cur := current(s.flags, st)
	if cur < 0 {
		unread := 0
		for _, c := range st {
			if c.readErr != nil {
				unread++
			}
		}
		if unread == len(st) || (!s.owned && s.misconfigured(st)) {
			return fmt.Errorf("ubootenv: not writing: %w", s.noValidCopy(st))
		}
	}
	target, flag := 0, byte(flagActive)
	if cur < 0 {
		// First write (or over a corrupt env): copy 1, as U-Boot, unless
		// it cannot be read and the other can.
		for i, c := range st {
			if c.readErr == nil {
				target = i
				break
			}
		}
	}
	if s.Redundant() && cur >= 0 {
		target = 1 - cur
		if s.flags == FlagCounter {
			flag = st[cur].flag + 1 // wraps 0xFF -> 0x00, which wins (env_check_redund)
		}
	}
	img, err := encodeImage(e, s.size, s.Redundant(), flag)
	if err != nil {
		return fmt.Errorf("ubootenv: %w", err)
	}
	if err := s.writeArea(&s.areas[target], img); err != nil {
		return fmt.Errorf("ubootenv: writing env to %s: %w", s.where(target), err)
	}
	if s.Redundant() && s.flags == FlagBoolean && cur >= 0 {
		if err := s.obsolete(&s.areas[cur]); err != nil {
			return fmt.Errorf("ubootenv: env written to %s, but marking %s obsolete failed: %w", s.where(target), s.where(cur), err)
		}
	}
	return nil
}

// obsolete clears the flag of a copy in place (NOR: bits can be cleared
// without an erase).
func (s *Storage) obsolete(a *area) error {
	cs, err := s.chunks(a)
	if err != nil {
		return err
	}
	if err := writeFull(a.dev, []byte{flagObsolete}, cs[0].off+flagOffset); err != nil {
		return err
	}
	return a.dev.Sync()
}

var _ io.Closer = (*Storage)(nil)
