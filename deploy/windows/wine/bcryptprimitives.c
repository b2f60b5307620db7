/*
 * bcryptprimitives.dll stand-in for Wine 8, which lacks ProcessPrng.
 *
 * Go >= 1.22 programs for Windows get their random bytes from ProcessPrng
 * in bcryptprimitives.dll and do not start without it. This DLL exports
 * ProcessPrng and forwards to RtlGenRandom (advapi32's SystemFunction036),
 * which Wine has. It is for tests under Wine only: never install it on
 * Windows, which has the real DLL. Build: deploy/windows/wine/build-stub.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* ProcessPrng fills data with size random bytes; it always returns TRUE,
 * as the real one does (Go treats a failure as fatal). */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T size)
{
	while (size > 0) {
		ULONG chunk = size > 0x10000000 ? 0x10000000 : (ULONG)size;
		if (!SystemFunction036(data, chunk))
			return FALSE;
		data += chunk;
		size -= chunk;
	}
	return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
	(void)instance;
	(void)reason;
	(void)reserved;
	return TRUE;
}
