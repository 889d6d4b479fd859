/* SPDX-License-Identifier: Apache-2.0 */
/* The settable log sink of common/log.h. */
#include <stdatomic.h>
#include <stdio.h>

#include "log.h"

static _Atomic int threshold = AGENT_LOG_INFO;
static _Atomic(agent_log_sink_fn) sink;

const char *agent_log_level_name(enum agent_log_level level)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	return (unsigned)level < 4 ? names[level] : "?";
}

void agent_log_set_sink(agent_log_sink_fn fn)
{
	atomic_store(&sink, fn);
}

void agent_log_set_level(enum agent_log_level level)
{
	atomic_store(&threshold, (int)level);
}

int agent_log_enabled(enum agent_log_level level)
{
	return (int)level <= atomic_load(&threshold);
}

void agent_vlog(enum agent_log_level level, const char *fmt, va_list ap)
{
	if (!agent_log_enabled(level))
		return;
	char line[1024];
	vsnprintf(line, sizeof(line), fmt, ap);
	agent_log_sink_fn fn = atomic_load(&sink);
	if (fn)
		fn(level, line);
	else
		fprintf(stderr, "%s: %s\n", agent_log_level_name(level), line);
}

void agent_log(enum agent_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	agent_vlog(level, fmt, ap);
	va_end(ap);
}
