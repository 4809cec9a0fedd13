//go:build !linux

package uefi

// ClearImmutable does nothing: efivarfs exists only on Linux; elsewhere a
// variable directory is a plain copy of a device's variables, with no
// inode flags.
func ClearImmutable(path string) error { return nil }
