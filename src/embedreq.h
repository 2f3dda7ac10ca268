/* embedreq.h - parsing and validation of a client's embeddings request (pure, no I/O).
 *
 * OpenAI's shape: {"model", "input", "dimensions"?, "encoding_format"?, "user"?}; input is a
 * string, an array of strings, an array of token ids, or an array of such arrays. What the
 * router itself needs (the model, how many inputs, their size for the budget, the format the
 * client wants the vectors in) is read here; the translators (providers/embed.c) read the rest. */
#ifndef ROUTER_EMBEDREQ_H
#define ROUTER_EMBEDREQ_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "errors.h"

/* OpenAI's limit on inputs per request. */
#define EMBEDREQ_MAX_INPUTS 2048
/* The largest `dimensions` accepted (no embedding model comes close). */
#define EMBEDREQ_MAX_DIMENSIONS 65536

struct embedreq {
	const char *model;       /* borrowed from the body */
	size_t n;                /* inputs */
	int tokens;              /* input is token ids (int[] or int[][]), not text */
	int base64;              /* encoding_format "base64" (else float) */
	int64_t dimensions;      /* 0 = the model's own length */
	int64_t bytes;           /* UTF-8 bytes of the text inputs */
	int64_t token_ids;       /* token ids of the token inputs */
};

/* Parses data as JSON and validates it (400 naming the parameter on bad input, 413/503 as
 * chatreq_parse). On success *body is a new reference the caller owns and out points into it. */
int embedreq_parse(const char *data, size_t len, json_t **body, struct embedreq *out,
		   struct rerr *err);
/* Validates an already parsed body. */
int embedreq_validate(const json_t *body, struct embedreq *out, struct rerr *err);
/* Text input i of a validated body (NULL for token input). */
const char *embedreq_text(const json_t *body, size_t i);
/* The most tokens the inputs can hold: a token covers at least one byte of text. */
int64_t embedreq_token_bound(const struct embedreq *r);

#endif
