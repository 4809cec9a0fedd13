// Package hw groups the Linux device access that keel-init and keel's
// on-device commands share: hw/blockdev pins the boot disk (the one the
// firmware loaded keel from, or the one disk that holds all of keel's
// partitions; another disk with the same names is reported, never used)
// and finds partitions on it by GPT name; hw/watchdog arms, pets and
// disarms the hardware watchdog.
package hw
