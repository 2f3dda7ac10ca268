/* fuzz_chatreq.c - chatreq_parse on arbitrary bytes.
 *
 * Properties: a success yields an object body whose model is the returned non-empty string and
 * whose stream flags are consistent; a failure is a 400 invalid_request_error with no body and an
 * error that serialises into a valid envelope.
 */
#include <stdint.h>
#include <string.h>

#include "chatreq.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	int rc = chatreq_parse((const char *)data, size, &body, &cr, &err);
	if (rc == 0) {
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
