/* fuzz_chatreq.c - chatreq_parse on arbitrary bytes.
 *
 * Properties: a success yields an object body whose model is the returned non-empty string and
 * whose stream flags are consistent; a failure is a 400 invalid_request_error with no body and an
 * error that serialises into a valid envelope; an accepted model id is at most
 * CHATREQ_MAX_NAME_BYTES long. The same bytes through log_escape (what a client string becomes in
 * a header or a log line) keep no raw control character: no C0, DEL, C1 or U+2028/2029.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chatreq.h"
#include "fuzz_common.h"
#include "log.h"

static void check_escape(const uint8_t *data, size_t size)
{
	size_t cap = size * 4 + 1;
	char *out = malloc(cap);
	FUZZ_ASSERT(out != NULL);
	size_t n = log_escape(out, cap, (const char *)data, size);
	FUZZ_ASSERT(n < cap && out[n] == '\0' && strlen(out) == n);
	const unsigned char *p = (const unsigned char *)out;
	for (size_t i = 0; i < n; i++) {
		FUZZ_ASSERT(p[i] >= 0x20 && p[i] != 0x7F);
		if (i + 1 < n && p[i] == 0xC2)
			FUZZ_ASSERT(p[i + 1] < 0x80 || p[i + 1] > 0x9F);
		if (i + 2 < n && p[i] == 0xE2 && p[i + 1] == 0x80)
			FUZZ_ASSERT(p[i + 2] != 0xA8 && p[i + 2] != 0xA9);
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	check_escape(data, size);
	int rc = chatreq_parse((const char *)data, size, &body, &cr, &err);
	if (rc == 0) {
		FUZZ_ASSERT(strlen(cr.model) <= CHATREQ_MAX_NAME_BYTES);
		FUZZ_ASSERT(json_is_object(body));
		FUZZ_ASSERT(err.status == 0);
		FUZZ_ASSERT(cr.model && cr.model[0]);
		FUZZ_ASSERT(cr.model == json_string_value(json_object_get(body, "model")));
		FUZZ_ASSERT(json_array_size(json_object_get(body, "messages")) > 0);
		FUZZ_ASSERT(cr.stream == json_is_true(json_object_get(body, "stream")));
		FUZZ_ASSERT(!cr.include_usage || cr.stream);
		/* The validated body serialises. */
		char *s = json_dumps(body, JSON_COMPACT);
		FUZZ_ASSERT(s != NULL);
		free(s);
		json_decref(body);
	} else {
		FUZZ_ASSERT(rc == -1);
		FUZZ_ASSERT(body == NULL);
		FUZZ_ASSERT(err.status == 400);
		FUZZ_ASSERT(err.type && strcmp(err.type, "invalid_request_error") == 0);
		fuzz_check_rerr(&err, 0);
	}
	return 0;
}
