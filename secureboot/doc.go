// Package secureboot makes keel's UEFI Secure Boot keys, signs keel's
// unified kernel image with them, and prepares the authenticated variables
// that enrol the keys in a firmware in setup mode.
//
// # The chain
//
// UEFI Secure Boot (UEFI 2.10 chapter 32) is a chain of three key
// databases, each authorising changes to the next, and a last link from the
// image database to the boot loader:
//
//	PK   platform key: one X.509 certificate, the owner of the machine.
//	 |   Signs updates of PK itself and of KEK.
//	KEK  key exchange keys: signs updates of db (and dbx).
//	 |
//	db   authorised image database: the certificates (or hashes) an image
//	 |   must be signed by (or match) for the firmware to start it.
//	 v
//	\EFI\BOOT\BOOTX64.EFI: keel's UKI, Authenticode-signed with the db key.
//
// GenerateKeys makes the three key pairs (RSA 2048 with self-signed X.509
// certificates: what every firmware accepts) in one directory: PK.key,
// PK.crt, KEK.key, KEK.crt, db.key, db.crt. The private keys are kept like
// keel's manifest signing keys: mode 0600, never overwritten, refused when
// group or others may read them (manifest.ReadSecretFile).
//
// # Signing images (UEFI 2.10 section 32.5)
//
// The firmware verifies a PE/COFF image against db by its Authenticode
// signature: a PKCS#7 SignedData over the image's Authenticode hash (the
// file without its checksum, the certificate table entry and the
// certificate table), stored in a WIN_CERTIFICATE of type
// WIN_CERT_TYPE_PKCS_SIGNED_DATA in the image's attribute certificate
// table. SignPE adds such a signature with go-uefi's authenticode package
// (the code sbctl signs with) and fixes the PE checksum; VerifyPE checks
// one. Debian's sbverify accepts what SignPE writes (the tests run it).
//
// # Enrolment payloads (UEFI 2.10 sections 32.4 and 8.2.2)
//
// PK, KEK and db hold EFI_SIGNATURE_LISTs (section 32.4.1): a header naming
// the signature type, then EFI_SIGNATURE_DATA entries, each an owner GUID
// and the signature data. SignatureList makes a list with one
// EFI_CERT_X509_GUID entry, the DER certificate, owned by OwnerGUID.
//
// The three are time-based authenticated variables
// (EFI_VARIABLE_TIME_BASED_AUTHENTICATED_WRITE_ACCESS, section 8.2.2): a
// write passes the data prefixed by an EFI_VARIABLE_AUTHENTICATION_2
// descriptor, an EFI_TIME and a WIN_CERTIFICATE_UEFI_GUID of type
// EFI_CERT_TYPE_PKCS7_GUID holding a detached PKCS#7 SignedData over
//
//	VariableName || VendorGuid || Attributes || TimeStamp || Data
//
// (the name in UTF-16LE without its terminating zero, the attributes as a
// little-endian UINT32). AuthVariable makes that blob; its signer is what
// the firmware demands: PK signs PK (in setup mode the firmware checks the
// new PK's self-signature) and KEK, KEK signs db. Enrolment writes db, then
// KEK, then PK: writing PK ends setup mode. Enrolment returns the three in
// that order.
//
// # What the TPM sees: PCR 7
//
// A firmware with a TPM measures its Secure Boot policy into PCR 7 (TCG PC
// Client Platform Firmware Profile §3.3.4.8): the SecureBoot variable and
// the PK, KEK, db and dbx variables as they are (EV_EFI_VARIABLE_DRIVER_CONFIG
// events; a variable that is not set is measured with no data, as keel's
// dbx is on OVMF), a separator, and then for each image it verified the
// EFI_SIGNATURE_DATA of the db entry that verified it
// (EV_EFI_VARIABLE_AUTHORITY: OwnerGUID and keel's db certificate for
// keel's UKI; EDK2 measures each entry once a boot). So PCR 7 binds
// "Secure Boot on, with exactly these keys, and keel's UKI verified by
// keel's db certificate": keel's sealed secrets include it (package tpm,
// "Sealed secrets"), and `keel pcr predict --secure-boot DIR` predicts it
// from the enrolment files or the key directory (package tpm/tcglog). In
// setup mode PCR 7 holds SecureBoot=0 and empty key databases, another
// value: a secret does not unseal in the factory boot before enrolment,
// nor on a device whose Secure Boot was turned off.
//
// The owner GUID of keel's signature list entries is OwnerGUID,
// 51743a4b-2c12-487e-bd4e-b0105fdb8961: a random version 4 GUID made for
// keel, so that tools listing db (efi-readvar, sbctl, mokutil --db) show
// which entries keel enrolled.
package secureboot
