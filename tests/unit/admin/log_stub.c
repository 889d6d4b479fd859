/* SPDX-License-Identifier: Apache-2.0 */
/* agent_log for tests that link the control plane without agent_main.c: lines go to stderr
 * with a "# " prefix so that they never disturb TAP output. */
#include <stdarg.h>
#include <stdio.h>

#include "agent.h"

enum agent_log_level agent_log_threshold = AGENT_LOG_DEBUG;

void agent_log(enum agent_log_level level, const char *fmt, ...)
{
	if (level > agent_log_threshold)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("# log: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}
