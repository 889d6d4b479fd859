/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Actions of the policy language applied to one value: mask (format-preserving), replace,
 * redact, hash (HMAC-SHA256 through OpenSSL). Pure functions over borrowed input; the result is
 * appended to a caller-owned buffer.
 */
#ifndef MESHMASK_ACTION_H
#define MESHMASK_ACTION_H

#include <stddef.h>

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

/*
 * Whether the action keeps the value's length in bytes (mask with a one-byte char; used for
 * in-place TLS rewriting, where only such actions are allowed).
 */
int action_length_preserving(const struct policy_action *a);

#endif
