/* embedreq.c - see embedreq.h. */
#include "embedreq.h"

#include <string.h>

#include "chatreq.h"

/* A token array: non-empty, non-negative integer ids. Returns its length, or -1. */
static long token_array(const json_t *a)
{
	if (!json_is_array(a) || json_array_size(a) == 0)
		return -1;
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return -1;
	}
	return (long)json_array_size(a);
}

static int check_input(const json_t *input, struct embedreq *out, struct rerr *err)
{
	if (json_is_string(input)) {
		if (json_string_length(input) == 0)
			return rerr_invalid(err, "input", "'input' cannot be an empty string.");
		out->n = 1;
		out->bytes = (int64_t)json_string_length(input);
		return 0;
	}
	if (!json_is_array(input) || json_array_size(input) == 0)
		return rerr_invalid(err, "input",
				    "'input' must be a non-empty string, an array of strings, an array of "
				    "token ids, or an array of token-id arrays.");
	size_t n = json_array_size(input);
	const json_t *first = json_array_get(input, 0);
	if (json_is_integer(first)) {
		long k = token_array(input);
		if (k < 0)
			return rerr_invalid(err, "input", "'input' as token ids must hold only "
					    "non-negative integers.");
		out->n = 1;
		out->tokens = 1;
		out->token_ids = k;
		return 0;
	}
	if (n > EMBEDREQ_MAX_INPUTS)
		return rerr_invalid(err, "input", "'input' holds %zu items; at most %d per request.", n,
				    EMBEDREQ_MAX_INPUTS);
	out->n = n;
	out->tokens = json_is_array(first);
	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_array_get(input, i);
		if (out->tokens) {
			long k = token_array(v);
			if (k < 0)
				return rerr_invalid(err, "input", "'input[%zu]' must be a non-empty array of "
						    "non-negative token ids, like every item of 'input'.", i);
			out->token_ids += k;
		} else if (!json_is_string(v)) {
			return rerr_invalid(err, "input", "'input[%zu]' must be a string, like 'input[0]'.",
					    i);
		} else if (json_string_length(v) == 0) {
			return rerr_invalid(err, "input", "'input[%zu]' is an empty string.", i);
		} else {
			out->bytes += (int64_t)json_string_length(v);
		}
	}
	return 0;
}

int embedreq_validate(const json_t *body, struct embedreq *out, struct rerr *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(body))
		return rerr_invalid(err, NULL, "The request body must be a JSON object.");
	const json_t *model = json_object_get(body, "model");
	if (!json_is_string(model) || json_string_length(model) == 0)
		return rerr_invalid(err, "model", "'model' is required: a string naming an embedding "
				    "model (GET /v1/models lists them).");
	if (json_string_length(model) > CHATREQ_MAX_NAME_BYTES)
		return rerr_invalid(err, "model", "'model' has at most %d bytes.", CHATREQ_MAX_NAME_BYTES);
	out->model = json_string_value(model);
	const json_t *input = json_object_get(body, "input");
	if (!input)
		return rerr_invalid(err, "input", "'input' is required: the text (or texts) to embed.");
	if (check_input(input, out, err) < 0)
		return -1;
	const json_t *dims = json_object_get(body, "dimensions");
	if (dims && !json_is_null(dims)) {
		if (!json_is_integer(dims) || json_integer_value(dims) < 1 ||
		    json_integer_value(dims) > EMBEDREQ_MAX_DIMENSIONS)
			return rerr_invalid(err, "dimensions", "'dimensions' must be an integer from 1 to %d.",
					    EMBEDREQ_MAX_DIMENSIONS);
		out->dimensions = json_integer_value(dims);
	}
	const json_t *fmt = json_object_get(body, "encoding_format");
	if (fmt && !json_is_null(fmt)) {
		const char *f = json_string_value(fmt);
		if (!f || (strcmp(f, "float") != 0 && strcmp(f, "base64") != 0))
			return rerr_invalid(err, "encoding_format",
					    "'encoding_format' must be \"float\" or \"base64\".");
		out->base64 = strcmp(f, "base64") == 0;
	}
	const json_t *user = json_object_get(body, "user");
	if (user && !json_is_null(user) && !json_is_string(user))
		return rerr_invalid(err, "user", "'user' must be a string.");
	if (json_object_get(body, "stream") && json_is_true(json_object_get(body, "stream")))
		return rerr_invalid(err, "stream", "Embeddings are not streamed: leave 'stream' out.");
	return 0;
}

int embedreq_parse(const char *data, size_t len, json_t **body, struct embedreq *out,
		   struct rerr *err)
{
	*body = NULL;
	json_t *j;
	if (chatreq_load(data, len, "The request body is empty; send a JSON object with 'model' and "
			 "'input'.", &j, err) < 0)
		return -1;
	if (embedreq_validate(j, out, err) < 0) {
		json_decref(j);
		return -1;
	}
	*body = j;
	return 0;
}

const char *embedreq_text(const json_t *body, size_t i)
{
	const json_t *input = json_object_get(body, "input");
	if (json_is_string(input))
		return i == 0 ? json_string_value(input) : NULL;
	return json_string_value(json_array_get(input, i));
}

int64_t embedreq_token_bound(const struct embedreq *r)
{
	return r->bytes + r->token_ids;
}
