//go:build !linux

package efivars

// ClearImmutable does nothing: efivarfs exists only on Linux; elsewhere the store is a
// plain directory (a copy of a device's variables) with no inode flags.
func ClearImmutable(path string) error { return nil }
