/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask detokenize`: POST /v1/detokenize of a running agent from the command line (for
 * auditors and support tools). Exit codes as the other remote commands (cli_remote.h).
 */
#ifndef MESHMASK_CLI_DETOK_H
#define MESHMASK_CLI_DETOK_H

#define CLI_DETOKENIZE_USAGE                                                                   \
	"detokenize --policy P --rule R [--json] [--agent URL] [--token-file F] [--cacert F] " \
	"[--insecure] [VALUE...|-]"

/* argv[0] is "detokenize"; returns the exit code. */
int cli_detokenize(int argc, char **argv);

#endif
