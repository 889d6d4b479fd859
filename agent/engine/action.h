/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Actions of the policy language applied to one value: mask (format-preserving), replace,
 * redact, hash (HMAC-SHA256 through OpenSSL). Pure functions over borrowed input; the result is
 * appended to a caller-owned buffer.
 */
#ifndef MESHMASK_ACTION_H
#define MESHMASK_ACTION_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "policy.h"

/*
 * Append the action's rendering of `val[0, len)` to `out`. `entity` is an mm_entity, or -1
 * for a whole field value (used by replace's default "<ENTITY>" / "<MASKED>"). For redact this
 * appends nothing: the caller decides what redaction looks like in its format (JSON null, an
 * empty form value, removed text). `val` is raw text (already unescaped). Returns 0 or
 * -ENOMEM / -EIO (crypto failure).
 */
int action_apply(const struct policy_action *a, int entity, const char *val, size_t len,
		 struct mm_buf *out);

struct ff1_key;

/*
 * Per-engine-instance state of one action: a hash action keeps its HMAC key schedule here (the
 * SHA-256 states after the padded key, computed once and copied per value), a
 * tokenize/detokenize action its AES key
 * schedule, so a value costs no algorithm fetch and no re-keying. The policy is shared between
 * threads; this is not: one per stream (or per thread). A zero-initialised struct is empty; it
 * borrows nothing from the action.
 */
struct action_ctx {
	void *mac; /* the keyed HMAC states (action.c), created on first use */
	const void *key; /* the hash key it was keyed with (to notice another action) */
	struct ff1_key *ff1; /* tokenize/detokenize, created on first use */
	const void *ff1_for; /* the key it was set up with */
	/*
	 * Values that could not be tokenized (masked instead) or detokenized (copied unchanged),
	 * added up here for the caller to count and reset.
	 */
	uint64_t unfit;
};

/*
 * action_apply() with per-instance state `c` (NULL: one-shot). The output is the same byte for
 * byte. Meant for one action (another action's key makes it re-key); the action must outlive
 * `c`, which is freed with action_ctx_free().
 */
int action_apply_ctx(const struct policy_action *a, struct action_ctx *c, int entity,
		     const char *val, size_t len, struct mm_buf *out);

void action_ctx_free(struct action_ctx *c);

/* Whether the action keeps a key schedule in a struct action_ctx (hash, tokenize, detokenize). */
int action_keyed(const struct policy_action *a);

/*
 * Whether the action keeps the value's length in bytes (mask with a one-byte char; used for
 * in-place TLS rewriting, where only such actions are allowed).
 */
int action_length_preserving(const struct policy_action *a);

#endif
