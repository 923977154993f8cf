package auth

// VerifyUncached exposes the full check, bypassing the token cache, to the
// benchmarks.
var VerifyUncached = (*Verifier).verify
