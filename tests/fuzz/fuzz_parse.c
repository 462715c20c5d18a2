/* The size and percent parsers every environment variable goes through,
 * and per-device variables (NAME_<i>=value) in an arbitrary environment. */
#include "limits_file.h"
#include "parse.h"

#include <stdint.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore(void *ctx, enum gpucap_limits_level level, const char *message)
{
	(void)ctx;
	(void)level;
	(void)message;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	uint64_t bytes;
	uint32_t percent;
	if (gpucap_parse_size(text, &bytes)) {
		char formatted[32];
		gpucap_format_size(bytes, formatted, sizeof(formatted));
	}
	gpucap_parse_percent(text, &percent);

	/* The same bytes as an environment: lines are entries. */
	char *env[64];
	size_t count = 0;
	for (char *line = text; count < 63;) {
		env[count++] = line;
		char *end = strchr(line, '\n');
		if (!end)
			break;
		*end = '\0';
		line = end + 1;
	}
	env[count] = NULL;
	static struct gpucap_limit_choice choice[GPUCAP_LIMITS_DEVICES];
	gpucap_limits_resolve(env, NULL, choice, ignore, NULL);
	free(text);
	return 0;
}
