//go:build !linux

package update

func dropCache(any) {}
