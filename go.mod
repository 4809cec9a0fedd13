module github.com/keelboot/keel

go 1.26.8

require (
	github.com/foxboron/go-uefi v0.0.0-20251010190908-d29549a44f29 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
