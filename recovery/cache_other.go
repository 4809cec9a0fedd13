//go:build !linux

package recovery

func dropCache(Device) {}
