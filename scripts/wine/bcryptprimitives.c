/*
 * bcryptprimitives.dll for Wine 8 (Debian 12), which lacks it: Go 1.24+
 * Windows binaries take their randomness from ProcessPrng and will not
 * start without it. This forwards to RtlGenRandom (advapi32's
 * SystemFunction036), which Wine has. Built by scripts/lib/wine.sh with
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c
 * and copied into the test prefix's system32. Never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	/* RtlGenRandom takes a ULONG length: feed it in chunks. */
	while (len > 0) {
		ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
