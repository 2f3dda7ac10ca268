/* fuzz_respx_request.c - the request side of POST /v1/responses on arbitrary bytes: respx_validate,
 * respx_to_chat and respx_input_items (respx_req.c).
 *
 * Properties: the body is refused with a valid error envelope, or it validates with the body's
 * model (at most CHATREQ_MAX_NAME_BYTES long); then the chat request built from it, with no
 * context and with its own stored input items as the context, is either a 400 or an object that
 * chatreq_validate accepts (the chat request the router builds is always one it would take from a
 * client) and serialises; the stored input items are an array of objects, each with a string
 * "type" and a non-empty string "id".
 */
#include <stdint.h>
#include <string.h>

#include "chatreq.h"
#include "fuzz_common.h"
#include "respx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_chat(const json_t *body, const json_t *context, const struct resp_req *rq)
{
	struct rerr err;
	rerr_clear(&err);
	json_t *chat = respx_to_chat(body, context, &err);
	if (!chat) {
		FUZZ_ASSERT(err.status == 400);
		fuzz_check_rerr(&err, 0);
		return;
	}
	FUZZ_ASSERT(err.status == 0);
	FUZZ_ASSERT(json_is_object(chat));
	struct chatreq cr;
	if (chatreq_validate(chat, &cr, &err) != 0) {
		char *s = json_dumps(chat, JSON_COMPACT);
		fprintf(stderr, "chat request refused (%s: %s): %s\n", err.param, err.message,
			s ? s : "?");
		free(s);
		FUZZ_ASSERT(!"the chat request passes chatreq_validate");
	}
	FUZZ_ASSERT(strcmp(cr.model, rq->model) == 0);
	FUZZ_ASSERT(cr.stream == rq->stream);
	FUZZ_ASSERT(cr.include_usage == rq->stream);
	char *s = json_dumps(chat, JSON_COMPACT);
	FUZZ_ASSERT(s != NULL);
	free(s);
	json_decref(chat);
}

static json_t *check_items(const json_t *body)
{
	json_t *items = respx_input_items(body, "resp_0123abcd");
	FUZZ_ASSERT(json_is_array(items));
	size_t i;
	const json_t *item;
	json_array_foreach(items, i, item)
	{
		FUZZ_ASSERT(json_is_object(item));
		FUZZ_ASSERT(json_is_string(json_object_get(item, "type")));
		const json_t *id = json_object_get(item, "id");
		FUZZ_ASSERT(json_is_string(id) && json_string_length(id) > 0);
	}
	return items;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body = NULL;
	struct rerr err;
	rerr_clear(&err);
	if (chatreq_load((const char *)data, size, "empty", &body, &err) < 0) {
		FUZZ_ASSERT(body == NULL);
		fuzz_check_rerr(&err, 0);
		return 0;
	}
	struct resp_req rq;
	int rc = respx_validate(body, &rq, &err);
	if (rc < 0) {
		FUZZ_ASSERT(rc == -1);
		FUZZ_ASSERT(err.status == 400);
		FUZZ_ASSERT(err.type && strcmp(err.type, "invalid_request_error") == 0);
		fuzz_check_rerr(&err, 0);
		json_decref(body);
		return 0;
	}
	FUZZ_ASSERT(err.status == 0);
	FUZZ_ASSERT(rq.model && rq.model == json_string_value(json_object_get(body, "model")));
	FUZZ_ASSERT(strlen(rq.model) <= CHATREQ_MAX_NAME_BYTES);
	FUZZ_ASSERT(!(rq.background && rq.stream));
	check_chat(body, NULL, &rq);
	json_t *items = check_items(body);
	check_chat(body, items, &rq);
	json_decref(items);
	json_decref(body);
	return 0;
}
