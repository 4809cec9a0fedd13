module github.com/keelboot/keel

go 1.26.8

require (
	github.com/foxboron/go-uefi v0.0.0-20251010190908-d29549a44f29
	github.com/klauspost/compress v1.20.4
	github.com/spf13/afero v1.9.3
	golang.org/x/sys v0.50.0
)

require (
	github.com/pkg/errors v0.9.1 // indirect
	golang.org/x/crypto v0.31.0 // indirect
	golang.org/x/text v0.21.0 // indirect
)
