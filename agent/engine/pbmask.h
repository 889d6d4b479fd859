/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protobuf masking: one whole message (a gRPC message, held whole by its framer) is masked by
 * field names taken from a descriptor set (policy/pbschema.h), or, without one, scanned in
 * place without ever changing its framing. Pure C over buffers: no sockets, no BPF.
 */
#ifndef MESHMASK_PBMASK_H
#define MESHMASK_PBMASK_H

#include <stddef.h>

#include "buf.h"
#include "mask.h"
#include "pbschema.h"
#include "policy.h"

/* Nesting bound (messages within messages, groups within groups); protobuf's own default. */
#define PB_MAX_DEPTH 100

/*
 * Mask one whole protobuf message `in[0, len)` of type t under policy p, appending the result to
 * out (in is borrowed; out keeps what it held). `fields` rules use the policy's JSONPath subset
 * over proto field names ($.customer.ssn, $..card_number, repeated fields as [*] / [n]; a map
 * field is repeated entries with fields key and value); `entities` rules scan string fields
 * (never bytes fields unless a rule's field path names that field); actions: mask keeps the
 * length; replace/hash change it (every enclosing length prefix is rewritten); redact removes
 * the field from the wire. A number, bool or enum named by a field rule cannot hold a mask: it
 * is removed (a fields + entities rule removes it only if its decimal text holds an entity).
 * Unknown fields are kept byte for byte, except under a path a rule names (removed: nothing
 * says what they hold). Nothing matched: out gets `in` unchanged. Mode observe: counted, out
 * gets `in`. The caller decides whether the direction is covered. stats (may be NULL) counts
 * values per rule/entity like the JSON engine (its rules array sized p->n_rules, allocated by
 * the caller). Returns 0, -EPROTO if the bytes are not a valid message of that type (nesting
 * deeper than PB_MAX_DEPTH included; out is then as it was; caller applies onError), -ENOMEM,
 * -EIO (crypto failure of a hash action).
 */
int pb_mask_message(const struct policy *p, const struct pb_msgtype *t, const void *in, size_t len,
		    struct mm_buf *out, struct mask_stats *stats);

/*
 * No descriptor for the method: a same-length entity scan of data[0, len) in place, with every
 * entity of the policy's rules (each masked by the first rule naming it if that rule's action
 * keeps the length, else by a full "*" mask, which reveals no more). Only length-delimited
 * fields whose whole content is printable UTF-8 text are scanned (nested messages are walked),
 * also one that could be read as a nested message too (e.g. a bare "145-22-1289"): masking
 * keeps every length, so the message's framing never changes, and were it a nested message
 * after all it would arrive garbled, never in clear. Outside text, no byte a valid reading
 * takes for a tag, a length or a number is changed (groups are walked; nesting past
 * PB_MAX_DEPTH is opaque bytes). Mode observe:
 * counted, data unchanged. Returns the values masked (or, observe, found), -EPROTO if data is
 * not a wire-format message (nothing changed), -ENOMEM.
 */
long pb_mask_raw(const struct policy *p, void *data, size_t len, struct mask_stats *stats);

/* Whether in[0, len) is a valid message of type t: 0 or -EPROTO (-ENOMEM). */
int pb_check(const struct pb_msgtype *t, const void *in, size_t len);

#endif
