// Package faultdev simulates storage that loses power in the middle of a
// write, for power-cut tests of on-disk formats (the U-Boot environment in
// bootenv/ubootenv in particular).
//
// Two pieces:
//
//   - Mem is an in-memory medium with the write rules of a regular file, a
//     NOR flash or a NAND flash (see Kind). It is the "surviving bytes" a
//     test re-opens after a cut.
//   - Device wraps any Target (a Mem, usually) and lets a budget of steps
//     through: every byte written is one step (or every WriteUnit bytes, for
//     flash pages), every erase block erased is one step. When the budget is
//     spent the power is "cut": the write in progress stops where it is, and
//     that operation and every later one fail with ErrPowerCut.
//   - Power is the budget; Devices wrapped by one Power lose power together
//     (two copies on two devices).
//
// A test first runs an operation with an unlimited budget to learn how many
// steps it takes (Steps), then repeats it from the same starting state with
// every budget from 0 to that number, and checks what a reader sees on the
// Mem afterwards.
//
// The method set of Target matches ubootenv.Device, so a *Device or a *Mem
// can be handed to ubootenv.OpenDevices; this package does not import
// ubootenv (its tests import this package).
package faultdev

import (
	"fmt"
	"io"
	"sync"
)

// Errors. They are constants: the package has no mutable state.
const (
	// ErrPowerCut is returned by every operation of a Device once its
	// budget is spent.
	ErrPowerCut = constError("faultdev: power cut")
	// ErrNotErased is returned by a NAND Mem asked to program bytes that
	// are not erased (0xFF): NAND pages cannot be rewritten in place.
	ErrNotErased = constError("faultdev: NAND program of a non-erased byte")
)

type constError string

func (e constError) Error() string { return string(e) }

// Target is the storage a Device wraps. It has the method set of
// ubootenv.Device.
type Target interface {
	io.ReaderAt
	io.WriterAt
	// Erase makes [off, off+n) writable: flash fills whole erase blocks with
	// 0xFF, a file does nothing.
	Erase(off, n int64) error
	// Sync makes earlier writes durable.
	Sync() error
	// Size is the size of the storage in bytes.
	Size() (int64, error)
}

// badBlocker is the optional NAND bad-block query that ubootenv uses (it
// mirrors the MEMGETBADBLOCK ioctl). Device forwards it when its Target has
// it.
type badBlocker interface {
	IsBadBlock(off int64) (bool, error)
}

// Kind is the write behaviour of a Mem.
type Kind int

const (
	// File: a write replaces the bytes; Erase does nothing (like a regular
	// file or a block device).
	File Kind = iota
	// NOR: a write can only clear bits (the new byte is old AND new), so
	// anything but a write of zeros needs an Erase first; Erase fills whole
	// erase blocks with 0xFF and must be block aligned.
	NOR
	// NAND: like NOR, but a write to any byte that is not erased (0xFF)
	// fails with ErrNotErased, and blocks can be marked bad.
	NAND
)

func (k Kind) String() string {
	switch k {
	case File:
		return "file"
	case NOR:
		return "NOR"
	case NAND:
		return "NAND"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Mem is an in-memory Target. It is not safe for concurrent use.
type Mem struct {
	mu        sync.Mutex // Mems and Devices are safe for concurrent use
	buf       []byte
	kind      Kind
	eraseSize int64
	bad       map[int64]bool // erase-block index -> bad (NAND)
}

var (
	_ Target     = (*Mem)(nil)
	_ badBlocker = (*Mem)(nil)
	_ Target     = (*Device)(nil)
	_ badBlocker = (*Device)(nil)
)

// NewMem returns a medium holding a copy of data. eraseSize is the erase
// block size for NOR and NAND (it must divide len(data)); it is ignored for
// File.
func NewMem(kind Kind, data []byte, eraseSize int64) *Mem {
	if kind != File && (eraseSize <= 0 || int64(len(data))%eraseSize != 0) {
		panic(fmt.Sprintf("faultdev: erase size %d does not divide the medium size %d", eraseSize, len(data)))
	}
	return &Mem{buf: append([]byte(nil), data...), kind: kind, eraseSize: eraseSize}
}

// Erased returns a flash medium of size bytes, all 0xFF.
func Erased(kind Kind, size int, eraseSize int64) *Mem {
	b := make([]byte, size)
	for i := range b {
		b[i] = 0xFF
	}
	return NewMem(kind, b, eraseSize)
}

// Bytes returns a copy of the medium's contents.
func (m *Mem) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.buf...)
}

// Clone returns an independent copy of the medium (contents and bad blocks).
func (m *Mem) Clone() *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem(m.kind, m.buf, m.eraseSize)
	for k, v := range m.bad {
		if c.bad == nil {
			c.bad = make(map[int64]bool)
		}
		c.bad[k] = v
	}
	return c
}

// MarkBad marks the erase block holding off as bad (NAND only).
func (m *Mem) MarkBad(off int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.kind != NAND {
		panic("faultdev: MarkBad on a " + m.kind.String() + " medium")
	}
	if m.bad == nil {
		m.bad = make(map[int64]bool)
	}
	m.bad[off/m.eraseSize] = true
}

// IsBadBlock reports whether the erase block holding off is marked bad.
func (m *Mem) IsBadBlock(off int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 || off >= int64(len(m.buf)) {
		return false, fmt.Errorf("faultdev: bad-block query at 0x%x outside the medium (size 0x%x)", off, len(m.buf))
	}
	if m.kind != NAND {
		return false, nil
	}
	return m.bad[off/m.eraseSize], nil
}

func (m *Mem) check(off, n int64) error {
	if off < 0 || n < 0 || off > int64(len(m.buf)) || n > int64(len(m.buf))-off {
		return fmt.Errorf("faultdev: access [0x%x, +0x%x) outside the medium (size 0x%x)", off, n, len(m.buf))
	}
	return nil
}

// ReadAt implements io.ReaderAt. Reading past the end returns io.EOF.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if off < 0 {
		return 0, fmt.Errorf("faultdev: negative offset %d", off)
	}
	if off >= int64(len(m.buf)) {
		return 0, io.EOF
	}
	n := copy(p, m.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt implements io.WriterAt with the rules of the medium's Kind.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	for i, b := range p {
		if err := m.writeByte(off+int64(i), b); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

func (m *Mem) writeByte(off int64, b byte) error {
	switch m.kind {
	case File:
		m.buf[off] = b
	case NOR:
		m.buf[off] &= b
	case NAND:
		if m.bad[off/m.eraseSize] {
			return fmt.Errorf("faultdev: write to bad block at 0x%x", off)
		}
		if m.buf[off] != 0xFF {
			return fmt.Errorf("%w at 0x%x", ErrNotErased, off)
		}
		m.buf[off] = b
	}
	return nil
}

// Erase fills the erase blocks [off, off+n) with 0xFF (NOR, NAND); the
// range must be block aligned. For File it only checks the range.
func (m *Mem) Erase(off, n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(off, n); err != nil {
		return err
	}
	if m.kind == File {
		return nil
	}
	if off%m.eraseSize != 0 || n%m.eraseSize != 0 {
		return fmt.Errorf("faultdev: erase [0x%x, +0x%x) not aligned to the erase block size 0x%x", off, n, m.eraseSize)
	}
	for blk := off; blk < off+n; blk += m.eraseSize {
		if err := m.eraseBlock(blk, m.eraseSize); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) eraseBlock(off, n int64) error {
	if m.kind == NAND && m.bad[off/m.eraseSize] {
		return fmt.Errorf("faultdev: erase of bad block at 0x%x", off)
	}
	for i := off; i < off+n; i++ {
		m.buf[i] = 0xFF
	}
	return nil
}

// Sync does nothing: a Mem has no cache.
func (m *Mem) Sync() error { return nil }

// Size returns the medium size.
func (m *Mem) Size() (int64, error) { return int64(len(m.buf)), nil }

// EraseSize returns the erase block size for NOR and NAND, and 0 for File
// (no erase needed): the optional method ubootenv uses to spot flash.
func (m *Mem) EraseSize() int64 {
	if m.kind == File {
		return 0
	}
	return m.eraseSize
}

// Options tunes how a Device spends its budget.
type Options struct {
	// WriteUnit is how many bytes land atomically per step. 0 or 1: every
	// byte is a step (a write is torn at any byte). A flash page size
	// models page programming. The last unit of a write may be shorter.
	WriteUnit int64
	// EraseUnit is the erase block size: an Erase of n bytes costs
	// ceil(n/EraseUnit) steps, one block at a time. 0: an Erase is one step.
	EraseUnit int64
	// TornErase: when the power is cut at an erase step, the block being
	// erased is left half erased (its first half 0xFF, the rest as it was)
	// instead of untouched, as an interrupted flash erase can leave it. It
	// needs a Mem target with NOR or NAND kind.
	TornErase bool
}

// Power is a supply shared by the Devices that hang on it: a budget of
// steps that they spend together, and one cut that stops them all (two
// copies of an env on two devices lose power at the same moment).
type Power struct {
	mu     sync.Mutex // held for every operation of its Devices
	budget int64      // < 0: unlimited
	steps  int64
	cut    bool
}

// NewPower returns a supply that lets budget steps complete and then cuts;
// a negative budget never cuts (use it to count Steps).
func NewPower(budget int64) *Power { return &Power{budget: budget} }

// Steps returns the number of steps completed so far.
func (p *Power) Steps() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.steps
}

// IsCut reports whether the power has been cut.
func (p *Power) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// take spends one step; false means the power is now cut.
func (p *Power) take() bool {
	if p.cut {
		return false
	}
	if p.budget >= 0 && p.steps >= p.budget {
		p.cut = true
		return false
	}
	p.steps++
	return true
}

// Wrap returns a Device over t powered by p.
func (p *Power) Wrap(t Target, opt Options) *Device {
	return &Device{t: t, opt: opt, p: p}
}

// Device passes operations to its Target until its Power's budget is
// spent; then the power is cut: the operation in progress stops part way,
// and it and every later operation (reads included) return ErrPowerCut.
type Device struct {
	t   Target
	opt Options
	p   *Power
}

// New wraps t with a Power of its own: budget steps may complete before
// the cut; a negative budget never cuts.
func New(t Target, budget int64, opt Options) *Device {
	return NewPower(budget).Wrap(t, opt)
}

// Steps returns the number of steps completed so far on the Device's
// Power.
func (d *Device) Steps() int64 { return d.p.Steps() }

// IsCut reports whether the power has been cut.
func (d *Device) IsCut() bool { return d.p.IsCut() }

func (d *Device) take() bool { return d.p.take() }

// ReadAt reads from the target unless the power is cut.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.p.cut {
		return 0, ErrPowerCut
	}
	return d.t.ReadAt(p, off)
}

// WriteAt writes unit by unit, one step each, and stops at the cut.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.p.cut {
		return 0, ErrPowerCut
	}
	unit := d.opt.WriteUnit
	if unit <= 0 {
		unit = 1
	}
	done := 0
	for done < len(p) {
		n := int(min(unit, int64(len(p)-done)))
		if !d.take() {
			return done, ErrPowerCut
		}
		w, err := d.t.WriteAt(p[done:done+n], off+int64(done))
		done += w
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// Erase erases block by block, one step each, and stops at the cut (leaving
// the block at the cut half erased when Options.TornErase is set).
func (d *Device) Erase(off, n int64) error {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.p.cut {
		return ErrPowerCut
	}
	if n <= 0 {
		return d.t.Erase(off, n)
	}
	unit := d.opt.EraseUnit
	if unit <= 0 {
		unit = n
	}
	for pos := off; pos < off+n; pos += unit {
		l := min(unit, off+n-pos)
		if !d.take() {
			if m, ok := d.t.(*Mem); ok && d.opt.TornErase && m.kind != File {
				m.mu.Lock()
				_ = m.eraseBlock(pos, l/2)
				m.mu.Unlock()
			}
			return ErrPowerCut
		}
		if err := d.t.Erase(pos, l); err != nil {
			return err
		}
	}
	return nil
}

// Sync syncs the target unless the power is cut. It costs no step.
func (d *Device) Sync() error {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.p.cut {
		return ErrPowerCut
	}
	return d.t.Sync()
}

// Size returns the target size unless the power is cut.
func (d *Device) Size() (int64, error) {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.p.cut {
		return 0, ErrPowerCut
	}
	return d.t.Size()
}

// EraseSize forwards the target's erase block size (0 when it has none).
func (d *Device) EraseSize() int64 {
	if e, ok := d.t.(interface{ EraseSize() int64 }); ok {
		return e.EraseSize()
	}
	return 0
}

// IsBadBlock forwards the NAND bad-block query to the target (false when
// the target has none).
func (d *Device) IsBadBlock(off int64) (bool, error) {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.p.cut {
		return false, ErrPowerCut
	}
	if b, ok := d.t.(badBlocker); ok {
		return b.IsBadBlock(off)
	}
	return false, nil
}
