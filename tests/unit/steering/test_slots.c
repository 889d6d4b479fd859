// SPDX-License-Identifier: Apache-2.0
/* slots_assign: a policy keeps its slot across sets; new ones take free slots first. */
#include <string.h>

#include "slots.h"
#include "tap.h"

#define N 4

int main(void)
{
	int out[8];
	const char *empty[N] = {0};
	const char *ab[] = {"a", "b"};
	is_int((int)slots_assign(empty, N, ab, 2, out), 2, "two names, four free slots");
	is_int(out[0], 0, "first free slot");
	is_int(out[1], 1, "second free slot");

	/* "a" deleted, "c" added: b keeps 1, c takes a never-used slot, not a's. */
	const char *cur1[N] = {"a", "b", NULL, NULL};
	const char *bc[] = {"b", "c"};
	is_int((int)slots_assign(cur1, N, bc, 2, out), 2, "b and c placed");
	is_int(out[0], 1, "b keeps its slot");
	is_int(out[1], 2, "c takes a free slot, not the one a leaves");

	/* Names are sorted in sets, slots are not: a new name sorting first moves nobody. */
	const char *cur2[N] = {NULL, "m", "z", NULL};
	const char *amz[] = {"a", "m", "z"};
	slots_assign(cur2, N, amz, 3, out);
	ok(out[0] == 0 && out[1] == 1 && out[2] == 2, "a new first name leaves m and z in place");

	/* Rename when every slot is held: the leaving holder's slot is reused. */
	const char *full[N] = {"a", "b", "c", "d"};
	const char *abce[] = {"a", "b", "c", "e"};
	is_int((int)slots_assign(full, N, abce, 4, out), 4, "all placed when one leaves");
	is_int(out[3], 3, "e reuses d's slot (no other left)");

	/* More names than slots: the extra one gets none. */
	const char *five[] = {"a", "b", "c", "d", "e"};
	is_int((int)slots_assign(full, N, five, 5, out), 4, "four of five placed");
	is_int(out[4], -1, "the fifth has no slot");
	ok(out[0] == 0 && out[1] == 1 && out[2] == 2 && out[3] == 3, "the others keep theirs");

	/* "" is free, like NULL (a slot cleared in the pinned map). */
	const char *blank[N] = {"", "x", "", ""};
	const char *y[] = {"y"};
	slots_assign(blank, N, y, 1, out);
	is_int(out[0], 0, "an empty name is a free slot");
	return tap_done();
}
