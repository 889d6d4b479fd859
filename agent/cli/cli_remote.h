/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask policy push|get|list|delete`: the admin API of a running agent from the command
 * line. Each function takes argv as the CLI's dispatch table passes it (argv[0] is the
 * subcommand) and returns the exit code: 0 ok, 1 invalid policy, 2 usage, 3 input/output
 * error (connection, TLS, 5xx), 5 refused by the agent (auth, not found, conflict, stale
 * If-Match).
 */
#ifndef MESHMASK_CLI_REMOTE_H
#define MESHMASK_CLI_REMOTE_H

#define CLI_REMOTE_OPTS "[--agent URL] [--token-file F] [--cacert F] [--insecure]"
#define CLI_POLICY_PUSH_USAGE "policy push [--if-match ETAG] " CLI_REMOTE_OPTS " FILE..."
#define CLI_POLICY_GET_USAGE "policy get " CLI_REMOTE_OPTS " NAME"
#define CLI_POLICY_LIST_USAGE "policy list [--json] " CLI_REMOTE_OPTS
#define CLI_POLICY_DELETE_USAGE "policy delete [--if-match ETAG] " CLI_REMOTE_OPTS " NAME"

int cli_policy_push(int argc, char **argv);
int cli_policy_get(int argc, char **argv);
int cli_policy_list(int argc, char **argv);
int cli_policy_delete(int argc, char **argv);

#endif
