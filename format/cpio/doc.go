// Package cpio reads and writes the "newc" cpio format (magic 070701) that
// the Linux kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst).
//
// Writer writes records in the order given, numbering inodes 1, 2, 3...
// Archive collects records by path, adds missing parent folders and writes
// them sorted by path with mtime 0, so the same content always gives the
// same bytes, whatever the order it was added in. Reader reads records back
// (keel's tests, and cpio -t in Go).
//
// The format, per record: a 110-byte ASCII header ("070701" and thirteen
// 8-digit hex fields: ino, mode, uid, gid, nlink, mtime, filesize,
// devmajor, devminor, rdevmajor, rdevminor, namesize including the NUL,
// check), the NUL-terminated name padded to a multiple of 4 counted from
// the header's start, then the data padded to a multiple of 4. A symlink's
// data is its target. The archive ends with a record named TRAILER!!!.
package cpio
