package ubootenv

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// devKind is what Open found at a configured path.
type devKind int

const (
	kindFile devKind = iota
	kindBlock
	kindNOR
	kindNAND
)

func (k devKind) String() string {
	return [...]string{"regular file", "block device", "NOR MTD", "NAND MTD"}[k]
}

// opened is one device opened by Open.
type opened struct {
	dev       Device
	file      *os.File
	kind      devKind
	writeSize int64 // NAND page size
	roErr     error // non-nil: opened read-only, and why
}

// openPath opens and classifies a configured device, like libubootenv
// check_env_device: a character device must answer MEMGETINFO with NOR
// (boolean flags) or NAND (counter flags); anything else that is a regular
// file or block device gets counter flags.
func openPath(path string) (*opened, error) {
	if strings.HasPrefix(path, "/dev/ubi") || (strings.HasPrefix(path, "/dev/mtd") && strings.Contains(path, ":")) {
		return nil, fmt.Errorf("ubootenv: %s: UBI volumes are not supported by keel; store the env on a file, block device or MTD partition", path)
	}
	o := &opened{}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS)) {
		o.roErr = err
		f, err = os.OpenFile(path, os.O_RDONLY, 0)
	}
	if err != nil {
		// Not wrapped with %w: a missing device is a broken config, not a
		// blank env, and must not match fs.ErrNotExist like ErrBlank does.
		return nil, fmt.Errorf("ubootenv: cannot open env device: %v — fix the device path in fw_env.config", err)
	}
	o.file = f
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ubootenv: %s: %w", path, err)
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		o.kind = kindFile
		o.dev = NewFileDevice(f, 0, -1)
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		o.kind = kindBlock
		o.dev = NewFileDevice(f, 0, -1)
	case m&fs.ModeCharDevice != 0:
		dev, kind, writeSize, err := openMTD(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("ubootenv: %s is a character device but not a usable MTD device: %v", path, err)
		}
		o.dev, o.kind, o.writeSize = dev, kind, writeSize
	default:
		f.Close()
		return nil, fmt.Errorf("ubootenv: %s is a %v, not a file, block device or MTD device", path, m.Type())
	}
	return o, nil
}
