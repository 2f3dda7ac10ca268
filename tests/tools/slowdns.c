/* slowdns.c - an LD_PRELOAD shim for tests: getaddrinfo("slow.test") takes SLOWDNS_MS
 * (default 8000) and then resolves 127.0.0.1, as a resolver whose first server does not answer
 * would; every other name resolves as usual. Built by the test that uses it
 * (tests/integration/bounds-time.test.js). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	if (!real)
		real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
	if (node && strcmp(node, "slow.test") == 0) {
		const char *e = getenv("SLOWDNS_MS");
		usleep((useconds_t)(e ? atoi(e) : 8000) * 1000);
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}
