package seal

// Internals the external tests (package seal_test) reach.
const (
	GCMMagic = gcmMagic
	CBCMagic = cbcMagic
	AgeMagic = ageMagic
)

// GCMHeaderLen is the length of an aes256-gcm header with a key id of idLen bytes.
func GCMHeaderLen(idLen int) int { return len(gcmMagic) + 2 + idLen + gcmSaltSize + gcmMACSize }
