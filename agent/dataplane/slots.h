/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stable policy slots: the BPF steering maps name a policy by a slot (a bit of a caller's mask,
 * a field of a destination key). A policy keeps its slot across policy sets, so a change never
 * makes a flow match another policy's destinations; a new policy takes a free slot. Pure logic,
 * no BPF.
 */
#ifndef MESHMASK_SLOTS_H
#define MESHMASK_SLOTS_H

#include <stddef.h>

/*
 * Assign a slot to each of the n `names`. cur[k] is the name holding slot k (NULL or "" =
 * free), nslots the number of slots. A name found in cur keeps its slot; a new one takes the
 * lowest free slot, and when none is free the lowest slot whose holder is not in `names` (it
 * is released in the same change). out[i] = slot of names[i], or -1 when none is left.
 * Returns how many names got a slot.
 */
size_t slots_assign(const char *const *cur, size_t nslots, const char *const *names, size_t n,
		    int *out);

#endif
