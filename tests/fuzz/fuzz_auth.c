/* fuzz_auth.c - the Authorization header of an agent (keys.c) and the budget estimate.
 *
 * Input: the first byte picks the part; the rest is an Authorization header value, or a request
 * body. Properties: key_parse accepts exactly "lrk_" + 12 base62 + "_" + 32 base62 and copies the
 * id; key_check without a database never says KEY_OK; the estimate of any parsable body priced at
 * the shipped models is non-negative.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/budget.h"
#include "../../src/keys.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_load_config(argv);
	return 0;
}

static int base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] & 1) {
		char id[KEY_ID_LEN + 1];
		int rc = key_parse(s, id);
		size_t n = strlen(s);
		int want = n == KEY_LEN && strncmp(s, "lrk_", 4) == 0 && s[4 + KEY_ID_LEN] == '_';
		for (size_t i = 4; want && i < n; i++)
			want = i == 4 + KEY_ID_LEN || base62(s[i]);
		if ((rc == 0) != want)
			abort();
		if (rc == 0 && memcmp(id, s + 4, KEY_ID_LEN) != 0)
			abort();
		char agent[64];
		if (key_check(NULL, s, agent, sizeof(agent)) == KEY_OK)
			abort();
	} else {
		json_error_t e;
		json_t *body = json_loadb(s, size - 1, 0, &e);
		if (body && fuzz_cfg->n_models) {
			struct chain ch = { .model = { 0 }, .n = 1 };
			if (budget_estimate_nusd(fuzz_cfg, body, size - 1, &ch, NULL) < 0)
				abort();
		}
		json_decref(body);
	}
	free(s);
	return 0;
}
