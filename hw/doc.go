// Package hw groups the Linux device access that keel-init and keel's
// on-device commands share: hw/blockdev finds partitions by GPT name,
// hw/watchdog arms and disarms the hardware watchdog. Neither decides
// anything; they are the thin I/O under the pure decisions.
package hw
