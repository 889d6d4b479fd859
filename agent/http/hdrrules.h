/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Header rules (`headers` in a policy rule) on one header value, shared by the HTTP/1.1 and
 * HTTP/2 framers: the whole value, or only the entity matches inside it, through the rule's
 * action. Pure C over buffers.
 */
#ifndef MESHMASK_HDRRULES_H
#define MESHMASK_HDRRULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "policy.h"

/* Whether any rule of p names a header. */
bool hdr_rules_any(const struct policy *p);

/*
 * Apply every rule of p naming header `name` to `val`, in rule order. Under `enforce`, `out`
 * receives the new value when it changed (*changed), and *removed says a whole-value redact
 * drops the header; otherwise nothing changes and both stay false. counts[i] (p->n_rules
 * entries, may be NULL) grows by the values rule i acted on (or would have, observe); the
 * total is added to *total. Returns 0 or -ENOMEM.
 */
int hdr_rules_apply(const struct policy *p, const char *name, size_t name_len, const char *val,
		    size_t val_len, bool enforce, struct mm_buf *out, bool *changed, bool *removed,
		    uint64_t *counts, uint64_t *total);

#endif
