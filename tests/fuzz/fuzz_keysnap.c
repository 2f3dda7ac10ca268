/* fuzz_keysnap.c - keysnap_read, the parser of the key snapshot (data/llm_keys.snapshot).
 *
 * Properties: a snapshot is taken whole or refused whole (a refused one leaves the table empty);
 * a taken table is sorted by id with unique ids of the key-id shape and 64-hex hashes; writing it
 * back and reading that gives the same table.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/keysnap.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void check_table(const struct key_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct key_entry *e = &t->v[i];
		FUZZ_ASSERT(strlen(e->hash) == 64 && strspn(e->hash, "0123456789abcdef") == 64);
		FUZZ_ASSERT(e->id[0] != '\0' && e->agent != NULL);
		if (i > 0)
			FUZZ_ASSERT(strcmp(t->v[i - 1].id, e->id) < 0);
		FUZZ_ASSERT(key_table_find(t, e->id) == e);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/fuzz-keysnap-XXXXXX");
		FUZZ_ASSERT(mkdtemp(dir) != NULL);
	}
	char in[96], out[96];
	snprintf(in, sizeof(in), "%s/in.snapshot", dir);
	snprintf(out, sizeof(out), "%s/out.snapshot", dir);
	FILE *f = fopen(in, "wb");
	FUZZ_ASSERT(f != NULL);
	FUZZ_ASSERT(fwrite(data, 1, size, f) == size);
	fclose(f);
	struct key_table t = { 0 };
	char err[256];
	if (keysnap_read(in, &t, err, sizeof(err)) == 0) {
		check_table(&t);
		FUZZ_ASSERT(keysnap_write(out, &t, NULL, err, sizeof(err)) == 0);
		struct key_table back = { 0 };
		FUZZ_ASSERT(keysnap_read(out, &back, err, sizeof(err)) == 0);
		FUZZ_ASSERT(key_table_equal(&t, &back));
		key_table_free(&back);
	} else {
		FUZZ_ASSERT(t.n == 0);
	}
	key_table_free(&t);
	return 0;
}
