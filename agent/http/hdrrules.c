// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <strings.h>

#include "hdrrules.h"
#include "action.h"
#include "detect.h"

static bool rule_names(const struct policy_rule *r, const char *n, size_t len)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (strlen(r->headers[i]) == len && !strncasecmp(n, r->headers[i], len))
			return true;
	return false;
}

bool hdr_rules_any(const struct policy *p)
{
	for (size_t i = 0; p && i < p->n_rules; i++)
		if (p->rules[i].n_headers)
			return true;
	return false;
}

static void count(uint64_t *counts, uint64_t *total, size_t i, uint64_t n)
{
	if (counts)
		counts[i] += n;
	*total += n;
}

int hdr_rules_apply(const struct policy *p, const char *name, size_t name_len, const char *val,
		    size_t val_len, bool enforce, struct mm_buf *out, bool *changed, bool *removed,
		    uint64_t *counts, uint64_t *total)
{
	struct mm_buf cur = {0}, nxt = {0};
	int r = mm_buf_reserve(&cur, val_len + 1); /* never a NULL value, even if empty */
	if (!r)
		r = mm_buf_append(&cur, val, val_len);
	*changed = *removed = false;
	for (size_t i = 0; !r && i < p->n_rules && !*removed; i++) {
		const struct policy_rule *rule = &p->rules[i];
		if (!rule_names(rule, name, name_len))
			continue;
		mm_buf_reset(&nxt);
		r = mm_buf_reserve(&nxt, 1);
		if (r)
			break;
		if (!rule->entities) {
			count(counts, total, i, 1);
			if (rule->action.type == POLICY_ACTION_REDACT) {
				*removed = true;
				break;
			}
			r = action_apply(&rule->action, -1, cur.data, cur.len, &nxt);
		} else {
			struct detect_match m[16];
			size_t start = 0, pos = 0, k, found = 0;
			do {
				k = detect_scan(cur.data, cur.len, start, rule->entities, 0, m, 16);
				for (size_t j = 0; !r && j < k; j++) {
					r = mm_buf_append(&nxt, cur.data + pos, m[j].off - pos);
					if (!r && rule->action.type != POLICY_ACTION_REDACT)
						r = action_apply(&rule->action, (int)m[j].entity,
								 cur.data + m[j].off, m[j].len,
								 &nxt);
					pos = m[j].off + m[j].len;
				}
				found += k;
				start = pos;
			} while (!r && k == 16 && start < cur.len);
			if (!r)
				r = mm_buf_append(&nxt, cur.data + pos, cur.len - pos);
			if (!found)
				continue;
			count(counts, total, i, found);
		}
		if (r)
			break;
		struct mm_buf t = cur;
		cur = nxt;
		nxt = t;
		*changed = true;
	}
	if (!r && enforce && *changed && !*removed)
		r = mm_buf_append(out, cur.data, cur.len);
	mm_buf_free(&cur);
	mm_buf_free(&nxt);
	if (!enforce)
		*changed = *removed = false;
	return r;
}
