//go:build !linux

package efivars

// clearImmutable: efivarfs exists only on Linux; elsewhere the store is a
// plain directory (a copy of a device's variables) with no inode flags.
func clearImmutable(path string) error { return nil }
