/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's log: every layer logs through agent_log(); where the lines go is a
 * sink the program sets (main.c: timestamped lines on stderr; tests: the default, stderr).
 * Never pass a traffic value, a key or a token to it.
 */
#ifndef MESHMASK_LOG_H
#define MESHMASK_LOG_H

#include <stdarg.h>

enum agent_log_level { AGENT_LOG_ERROR, AGENT_LOG_WARN, AGENT_LOG_INFO, AGENT_LOG_DEBUG };

/* Receives one formatted line (no trailing newline), borrowed for the call. */
typedef void (*agent_log_sink_fn)(enum agent_log_level level, const char *line);

/* printf-style log line at `level`; dropped above the threshold. */
void agent_log(enum agent_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The same with a va_list (for adapters such as libbpf's print callback). */
void agent_vlog(enum agent_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/* Route lines to fn; NULL restores the default (stderr, "level: line"). */
void agent_log_set_sink(agent_log_sink_fn fn);

/* Lines above `level` are dropped (default AGENT_LOG_INFO). */
void agent_log_set_level(enum agent_log_level level);

/* Whether a line at `level` would be logged (to skip building expensive messages). */
int agent_log_enabled(enum agent_log_level level);

/* "error", "warn", "info", "debug". */
const char *agent_log_level_name(enum agent_log_level level);

#endif
