/* fuzz_envfile.c - config_env_line, the parser of llm-router.env lines.
 *
 * Properties: an assignment's name is non-empty, made of [A-Za-z0-9_] and does not start with a
 * digit, and both strings lie inside the line; a blank or comment line sets nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	line[size] = '\0';
	size_t len = strlen(line);
	char *name = NULL, *value = NULL;
	int rc = config_env_line(line, &name, &value);
	FUZZ_ASSERT(rc >= -1 && rc <= 1);
	if (rc == 1) {
		FUZZ_ASSERT(name >= line && name < line + len + 1);
		FUZZ_ASSERT(value >= line && value <= line + len);
		FUZZ_ASSERT(name[0] != '\0' && !(name[0] >= '0' && name[0] <= '9'));
		FUZZ_ASSERT(strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == strlen(name));
		FUZZ_ASSERT(strlen(value) <= len);
	} else {
		FUZZ_ASSERT(name == NULL && value == NULL);
	}
	free(line);
	return 0;
}
