/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
int main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "usage: meshmask mask|policy ...\n");
	return 2;
}
