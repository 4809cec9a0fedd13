package faultdev

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestByteCutLandsPrefix(t *testing.T) {
	for budget := int64(0); budget <= 5; budget++ {
		m := NewMem(File, make([]byte, 8), 0)
		d := New(m, budget, Options{})
		n, err := d.WriteAt([]byte("abcd"), 2)
		if budget < 4 {
			if !errors.Is(err, ErrPowerCut) || int64(n) != budget {
				t.Fatalf("budget %d: n=%d err=%v, want n=%d ErrPowerCut", budget, n, err, budget)
			}
		} else if err != nil || n != 4 {
			t.Fatalf("budget %d: n=%d err=%v", budget, n, err)
		}
		want := make([]byte, 8)
		copy(want[2:], []byte("abcd")[:min(budget, 4)])
		if got := m.Bytes(); !bytes.Equal(got, want) {
			t.Fatalf("budget %d: medium %q, want %q", budget, got, want)
		}
		if budget < 4 {
			// After the cut everything fails.
			if _, err := d.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrPowerCut) {
				t.Errorf("ReadAt after cut: %v", err)
			}
			if _, err := d.WriteAt([]byte{1}, 0); !errors.Is(err, ErrPowerCut) {
				t.Errorf("WriteAt after cut: %v", err)
			}
			if err := d.Erase(0, 1); !errors.Is(err, ErrPowerCut) {
				t.Errorf("Erase after cut: %v", err)
			}
			if err := d.Sync(); !errors.Is(err, ErrPowerCut) {
				t.Errorf("Sync after cut: %v", err)
			}
			if _, err := d.Size(); !errors.Is(err, ErrPowerCut) {
				t.Errorf("Size after cut: %v", err)
			}
			if _, err := d.IsBadBlock(0); !errors.Is(err, ErrPowerCut) {
				t.Errorf("IsBadBlock after cut: %v", err)
			}
			if !d.IsCut() {
				t.Errorf("IsCut = false after cut")
			}
		}
	}
}

func TestUnlimitedCountsSteps(t *testing.T) {
	m := Erased(NOR, 64, 16)
	d := New(m, -1, Options{EraseUnit: 16, WriteUnit: 4})
	if err := d.Erase(0, 32); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	// 2 erase blocks + ceil(10/4) write units.
	if got := d.Steps(); got != 5 {
		t.Fatalf("Steps = %d, want 5", got)
	}
	if d.IsCut() {
		t.Fatal("unlimited device was cut")
	}
}

func TestWriteUnitIsAtomic(t *testing.T) {
	m := NewMem(File, make([]byte, 8), 0)
	d := New(m, 1, Options{WriteUnit: 3})
	n, err := d.WriteAt([]byte("abcdefg"), 0)
	if !errors.Is(err, ErrPowerCut) || n != 3 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if got := m.Bytes(); !bytes.Equal(got, []byte("abc\x00\x00\x00\x00\x00")) {
		t.Fatalf("medium %q", got)
	}
}

func TestNORSemantics(t *testing.T) {
	m := Erased(NOR, 32, 16)
	if _, err := m.WriteAt([]byte{0xF0}, 1); err != nil {
		t.Fatal(err)
	}
	// Programming can only clear bits.
	if _, err := m.WriteAt([]byte{0x0F}, 1); err != nil {
		t.Fatal(err)
	}
	if b := m.Bytes()[1]; b != 0x00 {
		t.Fatalf("NOR byte = %#x, want 0 (AND of writes)", b)
	}
	if err := m.Erase(0, 16); err != nil {
		t.Fatal(err)
	}
	if b := m.Bytes()[1]; b != 0xFF {
		t.Fatalf("after erase %#x", b)
	}
	if err := m.Erase(8, 16); err == nil {
		t.Fatal("unaligned erase accepted")
	}
	if err := m.Erase(16, 32); err == nil {
		t.Fatal("erase past the end accepted")
	}
	if _, err := m.WriteAt([]byte{1, 2}, 31); err == nil {
		t.Fatal("write past the end accepted")
	}
}

func TestNANDSemantics(t *testing.T) {
	m := Erased(NAND, 64, 16)
	if _, err := m.WriteAt([]byte{1, 2}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteAt([]byte{1}, 1); !errors.Is(err, ErrNotErased) {
		t.Fatalf("rewrite without erase: %v", err)
	}
	m.MarkBad(20)
	if bad, _ := m.IsBadBlock(31); !bad {
		t.Fatal("block 1 not bad")
	}
	if bad, _ := m.IsBadBlock(32); bad {
		t.Fatal("block 2 bad")
	}
	if err := m.Erase(16, 16); err == nil {
		t.Fatal("erase of bad block accepted")
	}
	d := New(m, -1, Options{})
	if bad, err := d.IsBadBlock(16); !bad || err != nil {
		t.Fatalf("Device.IsBadBlock = %v, %v", bad, err)
	}
	c := m.Clone()
	if bad, _ := c.IsBadBlock(16); !bad {
		t.Fatal("Clone lost bad blocks")
	}
}

func TestTornErase(t *testing.T) {
	m := NewMem(NOR, bytes.Repeat([]byte{0}, 32), 16)
	d := New(m, 1, Options{EraseUnit: 16, TornErase: true})
	if err := d.Erase(0, 32); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("err = %v", err)
	}
	got := m.Bytes()
	want := append(bytes.Repeat([]byte{0xFF}, 16), append(bytes.Repeat([]byte{0xFF}, 8), bytes.Repeat([]byte{0}, 8)...)...)
	if !bytes.Equal(got, want) {
		t.Fatalf("medium\n%x\nwant\n%x", got, want)
	}
}

func TestReadAtEOF(t *testing.T) {
	m := NewMem(File, []byte("abc"), 0)
	p := make([]byte, 4)
	n, err := m.ReadAt(p, 1)
	if n != 2 || err != io.EOF {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if _, err := m.ReadAt(p, 3); err != io.EOF {
		t.Fatalf("err=%v", err)
	}
}

func TestSharedPower(t *testing.T) {
	a, b := NewMem(File, make([]byte, 4), 0), NewMem(File, make([]byte, 4), 0)
	p := NewPower(3)
	da, db := p.Wrap(a, Options{}), p.Wrap(b, Options{})
	if _, err := da.WriteAt([]byte{1, 1}, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := db.WriteAt([]byte{2, 2}, 0); n != 1 || !errors.Is(err, ErrPowerCut) {
		t.Fatalf("second device: n=%d err=%v", n, err)
	}
	if _, err := da.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("first device still powered: %v", err)
	}
	if p.Steps() != 3 || !p.IsCut() || !da.IsCut() || db.Steps() != 3 {
		t.Fatalf("steps=%d cut=%v", p.Steps(), p.IsCut())
	}
	if !bytes.Equal(a.Bytes(), []byte{1, 1, 0, 0}) || !bytes.Equal(b.Bytes(), []byte{2, 0, 0, 0}) {
		t.Fatalf("media %v %v", a.Bytes(), b.Bytes())
	}
}

func TestEraseSize(t *testing.T) {
	if got := New(NewMem(File, make([]byte, 8), 0), -1, Options{}).EraseSize(); got != 0 {
		t.Errorf("file EraseSize = %d", got)
	}
	if got := New(Erased(NOR, 64, 16), -1, Options{}).EraseSize(); got != 16 {
		t.Errorf("NOR EraseSize = %d", got)
	}
}
