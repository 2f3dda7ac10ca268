/* fuzz_map_error.c - provider_openai.map_error on an upstream error reply.
 *
 * Input: two bytes select the status (100..599), one byte the Retry-After value (-16..239), the
 * rest is the body. Properties: the router status is one of the mapped ones; credential failures
 * (401, and 403 unless it is a moderation verdict, which stays a 403 permission_error) become a
 * 502 that never carries upstream text; 429 and overloads (498/503/529) carry a positive
 * Retry-After and ask for a retry; the message never holds the provider key and the error
 * serialises into a valid envelope.
 */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	fuzz_build_contexts();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	long status = 100 + (long)((((unsigned)data[0] << 8) | data[1]) % 500);
	long retry_after = (long)data[2] - 16;
	const char *body = (const char *)data + 3;
	size_t len = size - 3;
	static const int rows[] = { FUZZ_CTX_OPENAI, FUZZ_CTX_OPENROUTER };
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		const struct xlate_ctx *x = &fuzz_ctx[rows[i]];
		struct rerr err;
		rerr_clear(&err);
		provider_openai.map_error(x, status, body, len, retry_after, &err);
		fuzz_check_rerr(&err, 1);
		static const int allowed[] = { 400, 402, 403, 404, 413, 429, 500, 502, 503, 504 };
		int ok = 0;
		for (size_t k = 0; k < sizeof(allowed) / sizeof(allowed[0]); k++)
			ok |= err.status == allowed[k];
		FUZZ_ASSERT(ok);
		FUZZ_ASSERT(err.type != NULL);
		if (status == 401 || (status == 403 && err.status != 403)) {
			FUZZ_ASSERT(err.status == 502);
			FUZZ_ASSERT(strstr(err.message, "refused the router's credentials") != NULL);
			FUZZ_ASSERT(err.param[0] == '\0');
		}
		if (err.status == 403) {
			/* Only a moderation verdict on the input keeps its 403. */
			FUZZ_ASSERT(status == 403);
			FUZZ_ASSERT(strcmp(err.type, "permission_error") == 0);
		}
		if (status == 429 || status == 498 || status == 503 || status == 529) {
			FUZZ_ASSERT(err.retry_after > 0);
			FUZZ_ASSERT(err.should_retry == 1);
		} else {
			FUZZ_ASSERT(err.should_retry == 0);
		}
	}
	return 0;
}
