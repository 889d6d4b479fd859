/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask policy push|get|list|delete`: the admin API of a running agent from the command
 * line. Each cli_policy_* function takes argv as the CLI's dispatch table passes it (argv[0]
 * is the subcommand) and returns the exit code: 0 ok, 1 invalid policy, 2 usage, 3
 * input/output error (connection, TLS, 5xx), 5 refused by the agent (auth, not found,
 * conflict, stale If-Match).
 *
 * The cli_remote_* client below is for other subcommands that talk to the agent.
 */
#ifndef MESHMASK_CLI_REMOTE_H
#define MESHMASK_CLI_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define CLI_REMOTE_OPTS "[--agent URL] [--token-file F] [--cacert F] [--insecure]"
#define CLI_POLICY_PUSH_USAGE "policy push [--if-match ETAG] " CLI_REMOTE_OPTS " FILE..."
#define CLI_POLICY_GET_USAGE "policy get " CLI_REMOTE_OPTS " NAME"
#define CLI_POLICY_LIST_USAGE "policy list [--json] " CLI_REMOTE_OPTS
#define CLI_POLICY_DELETE_USAGE "policy delete [--if-match ETAG] " CLI_REMOTE_OPTS " NAME"

int cli_policy_push(int argc, char **argv);
int cli_policy_get(int argc, char **argv);
int cli_policy_list(int argc, char **argv);
int cli_policy_delete(int argc, char **argv);

/*
 * The values of CLI_REMOTE_OPTS; a NULL (or false) field takes its default: agent
 * $MESHMASK_AGENT or http://127.0.0.1:9477 (http(s)://HOST[:PORT][/PREFIX]), token_file
 * $MESHMASK_TOKEN_FILE or /etc/meshmask/admin/token if readable, cacert the system's CA
 * certificates ($SSL_CERT_FILE, $SSL_CERT_DIR); insecure skips verifying the agent's certificate.
 */
struct cli_remote_cfg {
	const char *agent;
	const char *token_file;
	const char *cacert;
	bool insecure;
};

/* One answer of the agent, whatever its status. A zeroed struct is empty; it owns body. */
struct cli_reply {
	long status;
	char etag[128]; /* without its quotes; empty if none */
	struct mm_buf body;
};

/* The connection options of every remote command, as getopt_long entries ('a' 't' 'c' 'k'). */
#define CLI_REMOTE_LONGOPTS                                                                        \
	{"agent", required_argument, NULL, 'a'}, {"token-file", required_argument, NULL, 't'},     \
		{"cacert", required_argument, NULL, 'c'}, {"insecure", no_argument, NULL, 'k'}

/* Option c of CLI_REMOTE_LONGOPTS (argument arg) into cfg; false if c is not one of them. */
bool cli_remote_opt(int c, const char *arg, struct cli_remote_cfg *cfg);

struct cli_remote;

/* A client of cfg's agent (cfg is not kept); NULL with errno set after printing why. */
struct cli_remote *cli_remote_new(const struct cli_remote_cfg *cfg);
/* Close the client's connection and wipe its token; NULL is a no-op. */
void cli_remote_free(struct cli_remote *r);
/*
 * METHOD PATH (under the agent URL's prefix) with an optional borrowed body and If-Match
 * (an unquoted etag); 0 with *rep filled for any HTTP status, or -errno after printing why.
 */
int cli_remote_request(struct cli_remote *r, const char *method, const char *path,
		       const char *content_type, const char *body, size_t len, const char *if_match,
		       struct cli_reply *rep);
/* Print "what: STATUS message" and the agent's error details; the exit code for the status. */
int cli_remote_report(const char *what, const struct cli_reply *rep);
/* Free rep's body and zero it. */
void cli_reply_free(struct cli_reply *rep);

#endif
