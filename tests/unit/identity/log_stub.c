// SPDX-License-Identifier: Apache-2.0
/* agent_log for tests that link agent modules without agent_main.c: to stderr, all levels. */
#include <stdarg.h>
#include <stdio.h>

#include "agent.h"

enum agent_log_level agent_log_threshold = AGENT_LOG_DEBUG;

void agent_log(enum agent_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "# log %d: ", (int)level);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
