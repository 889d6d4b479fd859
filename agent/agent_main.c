/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
int main(void)
{
	fprintf(stderr, "meshmask-agent\n");
	return 2;
}
