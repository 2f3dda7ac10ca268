/* test_jsonx.c - parsing untrusted JSON under a memory ceiling: ordinary documents parse, wide
 * ones fail cleanly and leave no jansson memory behind, jansson survives an allocation refused at
 * any point of a parse, and a client body too complex to hold is a 413. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatreq.h"
#include "harness.h"
#include "jsonx.h"

/* "[0,0,...,0]" of n values. */
static char *wide_array(size_t n, size_t *len)
{
	char *s = malloc(2 * n + 2);
	size_t k = 0;
	s[k++] = '[';
	for (size_t i = 0; i < n; i++) {
		if (i)
			s[k++] = ',';
		s[k++] = '0';
	}
	s[k++] = ']';
	s[k] = '\0';
	*len = k;
	return s;
}

TEST(jsonx_ordinary_documents_parse)
{
	const char *doc = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi \\u00e9\"}],"
			  "\"n\":1,\"temperature\":0.5,\"stop\":null,\"stream\":true}";
	json_error_t e;
	unsigned long refused = jsonx_refusals();
	json_t *j = jsonx_loadb(doc, strlen(doc), JSON_REJECT_DUPLICATES, &e);
	CHECK(j != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content")), "hi \xc3\xa9");
	CHECK_INT_EQ(jsonx_refusals(), refused);
	json_decref(j);
	/* A syntax error is not a refusal. */
	j = jsonx_loadb("{\"a\":", 5, 0, &e);
	CHECK_NULL(j);
	CHECK_INT_EQ(jsonx_refusals(), refused);
}

TEST(jsonx_cost_counts_values_strings_and_the_longest_token)
{
	/* { counts 4, : , : one each; two strings; 13 bytes; longest string 1. */
	CHECK_INT_EQ(jsonx_parse_cost("{\"a\":1,\"b\":2}", 13), 7 * JSONX_TOKEN_COST + 2 * 32 + 13 + 2 + 4096);
	CHECK_INT_EQ(jsonx_parse_cost("[1,2]", 5), 3 * JSONX_TOKEN_COST + 5 + 4096);
	/* Structural characters inside strings are text, and escaped quotes do not end a string. */
	const char *s = "[\"a,b:[{\\\"\"]";
	CHECK_INT_EQ(jsonx_parse_cost(s, strlen(s)), 2 * JSONX_TOKEN_COST + 32 + strlen(s) + 2 * 8 + 4096);
	/* A string cut short by the end of the text still counts. */
	CHECK_INT_EQ(jsonx_parse_cost("\"abcd", 5), 32 + 5 + 2 * 4 + 4096);
	CHECK_INT_EQ(jsonx_parse_cost("", 0), 4096);
	CHECK_INT_EQ(jsonx_parse_ceiling(0), JSONX_PARSE_BASE);
	CHECK_INT_EQ(jsonx_parse_ceiling(1000), JSONX_PARSE_BASE + JSONX_PARSE_FACTOR * 1000);
	CHECK(jsonx_parse_ceiling((size_t)-1) > 0);
}

TEST(jsonx_wide_array_is_refused_before_parsing)
{
	size_t len;
	/* 4M values in 8 MiB: ~190 MB in jansson. */
	char *doc = wide_array((size_t)4 << 20, &len);
	unsigned long refused = jsonx_refusals();
	json_error_t e;
	json_t *j = jsonx_loadb(doc, len, 0, &e);
	CHECK_NULL(j);
	CHECK_INT_EQ(jsonx_refusals(), refused + 1);
	CHECK(strstr(e.text, "memory") != NULL);
	free(doc);
	/* A small wide array is fine. */
	doc = wide_array(100000, &len);
	j = jsonx_loadb(doc, len, 0, &e);
	CHECK_INT_EQ(json_array_size(j), 100000);
	json_decref(j);
	free(doc);
}

TEST(jsonx_text_heavy_and_number_heavy_documents_fit)
{
	/* One 12 MiB string: the lexer's buffer grows to twice it, plus the string itself. */
	size_t n = (size_t)12 << 20;
	char *doc = malloc(n + 64);
	int k = sprintf(doc, "{\"content\":\"");
	memset(doc + k, 'a', n);
	strcpy(doc + k + n, "\"}");
	json_error_t e;
	json_t *j = jsonx_loadb(doc, strlen(doc), 0, &e);
	CHECK(j != NULL);
	CHECK_INT_EQ(json_string_length(json_object_get(j, "content")), n);
	json_decref(j);
	free(doc);
	/* 500k logprob-like numbers of 12 bytes each. */
	n = 500000;
	doc = malloc(n * 13 + 8);
	size_t len = 0;
	doc[len++] = '[';
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(doc + len, "%s-0.12345678", i ? "," : "");
	doc[len++] = ']';
	j = jsonx_loadb(doc, len, 0, &e);
	CHECK_INT_EQ(json_array_size(j), n);
	json_decref(j);
	free(doc);
}

TEST(jsonx_client_body_too_complex_is_413)
{
	size_t len;
	char *doc = wide_array(((size_t)4 << 20) - 2, &len);
	json_t *body = NULL;
	struct chatreq cr;
	struct rerr err;
	rerr_clear(&err);
	CHECK_INT_EQ(chatreq_parse(doc, len, &body, &cr, &err), -1);
	CHECK_NULL(body);
	CHECK_INT_EQ(err.status, 413);
	CHECK_STR_EQ(err.code, "request_too_large");
	CHECK(strstr(err.message, "memory") != NULL);
	free(doc);
}
