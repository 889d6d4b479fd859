/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the parts of the streaming masking engine share (not an API): the stream, what it
 * derives from its policy, and the functions each part offers the others.
 *
 *   mask.c        format dispatch, sniffing, the public API (mask.h)
 *   mask_out.c    output (encoder, buffer, escapes), counters, onError, entity scan output
 *   mask_paths.c  field paths: a bit-parallel NFA per nesting level
 *   mask_json.c   the JSON (and NDJSON) state machine: holding values, whole-value actions
 *   mask_form.c   application/x-www-form-urlencoded
 *
 * The contract of the engine (what a policy does to a body) is written at the top of mask.c.
 */
#ifndef MESHMASK_MASK_INTERNAL_H
#define MESHMASK_MASK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "action.h"
#include "buf.h"
#include "codec.h"
#include "jsonscan.h"
#include "mask.h"
#include "textscan.h"

#define MASK_MAX_DEPTH 256
#define MASK_HOLD_MAX (64 * 1024)
#define MASK_OUT_FLUSH (64 * 1024)
/* Spans at least this long bypass the output buffer. */
#define MASK_OUT_DIRECT (16 * 1024)
/* Field paths longer than this never match (the matcher keeps its states in a u64). */
#define MASK_PATH_MAX_SEGS 62
/* Matches looked up at once in a held value; more go through the text scanner. */
#define MASK_SCAN_BATCH 16

enum jstate {
	J_VALUE,
	J_ARR_FIRST,
	J_OBJ_FIRST,
	J_KEY,
	J_COLON,
	J_AFTER,
	J_DONE,
	J_STR,
	J_NUM,
	J_LIT
};

/* How the current string or scalar is handled. */
enum vmode {
	V_COPY, /* copied through as it streams */
	V_WHOLE, /* held; a whole-value action applies */
	V_SCAN, /* held; entity scan, original bytes kept when nothing matches */
	V_STREAM, /* too long to hold: decoded through the text scanner, re-escaped */
	V_PASSRAW, /* too long under a whole-value rule with onError=pass: copied through */
};

enum errmode { E_NONE, E_FALLBACK, E_PASS };

struct jlevel {
	bool is_obj;
	bool alive; /* some field path may still match below */
	int rule; /* field rule inherited by every leaf below, -1 if none */
	uint32_t index;
	/*
	 * Members whose name no path names (elements, when no path has an index) all get the
	 * same path states: computed for the first one, kept in s->pg.memo for the others.
	 */
	bool memo_ok, memo_alive;
	int memo_rule;
};

/* A field path of a rule. */
struct fpath {
	const struct jpath *p;
	int rule;
};

/*
 * Field paths as bit masks over their segments, packed side by side in one u64 (as many as
 * fit, usually all): a path of n segments at offset o owns bits o..o+n, bit o+i = "segments
 * [0, i) consumed", bit o+n = "matched". A step shifts states by one bit and never out of a
 * path (its top bit is no segment), so one word steps every path it holds at once.
 */
struct fpword {
	uint64_t start; /* bit o of each path */
	uint64_t done; /* bit o+n of each path: the whole path matched */
	uint64_t below; /* bits o..o+n-1: something may still match below */
	uint64_t descend, any_key, any_idx; /* segments of each kind */
	uint64_t key, idx; /* named keys and indexes: compared one by one */
	/*
	 * The last step that compared no name or index, [0] for a member, [1] for an element: it
	 * depends on the state only, and records in an array repeat the same states.
	 */
	uint64_t memo_in[2], memo_out[2];
	const struct jpath_seg *seg[64]; /* the segment of each key/idx bit */
	int rule[64]; /* the rule of each done bit */
};

struct scan_ctx {
	struct mask_stream *s;
	bool escape; /* JSON string content */
	bool form; /* percent-encode */
	int rule; /* the one rule acting, or -1: by entity through map */
	const int *map; /* entity -> rule */
	bool modified;
	struct mm_buf *dst; /* NULL: the stream's output */
};

/*
 * What a stream derives from its policy (policy_init), with the scratch arrays whose size the
 * policy sets: mask_stream_reuse keeps it as a whole, so a field added here is kept too.
 */
struct mask_prog {
	uint32_t body_ents, all_ents;
	int ent_rule[MM_ENT__COUNT]; /* first entity-only rule per entity */
	int fb_rule[MM_ENT__COUNT]; /* first rule of any kind per entity (fallback) */

	struct fpath *fp;
	size_t n_fp;
	struct fpword *fw; /* the paths of fp (those of at most MASK_PATH_MAX_SEGS segments) */
	size_t n_fw; /* >= 1 when n_fp */
	uint64_t *states; /* (MASK_MAX_DEPTH + 1) * n_fw */
	uint64_t *memo; /* as many, after states: see jlevel.memo_ok */
	bool has_idx; /* some path has an [n] segment */
	uint64_t key_filter; /* fp_key_hash() bits of every named segment */
	bool fp_simple; /* every path is `$..name`: no states, one name compare per path */

	struct jlevel *lv; /* MASK_MAX_DEPTH + 1 levels, written on entry */
	struct action_ctx *actx; /* per rule: prepared hash keys (NULL: no hash rule) */
};

struct mask_stream {
	const struct policy *pol;
	char *content_type, *content_encoding;
	bool observe, bypass;
	enum mask_format fmt;
	enum codec_kind codec;
	bool wire_seen, wire_pass;
	struct codec_dec dec;
	struct codec_enc enc;
	bool enc_inited, enc_done;

	struct mm_buf out;
	mask_sink_fn sink;
	void *sink_ctx;
	int err;
	bool blocked, stopped;
	enum mask_outcome outcome;
	enum mm_reason reason;
	struct mask_stats st;

	struct mask_prog pg;

	/* JSON */
	enum jstate js;
	int depth;
	bool ndjson;
	int v_rule;
	enum vmode vm;
	bool str_key, str_dec;
	uint8_t esc; /* 0, 1 after '\\', 2..5 hex digits read + 2 */
	uint32_t uval, high;
	uint8_t num_st;
	const char *lit;
	uint8_t lit_i;
	bool holding;
	bool lazy; /* the string in view had no escape yet: decode it from the chunk when needed */
	const char *kview; /* the last key, decoded: in s->key or in the chunk (kview_chunk) */
	size_t kview_len;
	bool kview_chunk;
	struct mm_buf raw, dec_buf, key, tmp, act;
	uint32_t v_ents;
	unsigned v_flags;
	struct textscan ts_val;
	struct scan_ctx sc_val;

	/* error mode and text bodies */
	enum errmode em;
	bool em_line; /* NDJSON: the error ends at the next newline */
	struct textscan ts_body;
	struct scan_ctx sc_body;
	bool body_started;

	/* Content sniffing (sniff_end): the first bytes are held until the body's kind is known. */
	unsigned char sniff[8];
	uint8_t sniff_n;
	bool sniff_done;
	bool charset_bad; /* Content-Type names a charset the engine does not read (UTF-16/32) */
	bool multi_doc; /* sniffed JSON: documents may follow one another (NDJSON, concatenated) */
	bool sniff_text; /* labelled text, sniffed as JSON: a JSON error goes back to the text scan */
	enum mm_reason raw_reason; /* why a MASK_FMT_RAW body is handed to onError */
};

/* Buffers larger than this are not kept by mask_stream_reuse. */
#define MASK_REUSE_MAX_BUF (64 * 1024)

static inline bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static inline int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* ---- mask_out.c ---- */

/* Send the output buffer to the sink. 0 or the sink's error. */
int mask_out_flush(struct mask_stream *s);
/* Wire bytes (already encoded, or no encoding); a mask_sink_fn over the stream. */
int mask_out_wire(void *ctx, const char *p, size_t n);
/* Set up the encoder, mirroring the decoder, once output exists. */
void mask_enc_ready(struct mask_stream *s);
/* Decoded output of the format processors (encoded when the body is). */
int mask_out_put(struct mask_stream *s, const char *p, size_t n);
/* Percent-encode p[0, n) into b. */
int mask_form_escape(struct mm_buf *b, const char *p, size_t n);
/* JSON- or form-escape p[0, n) into the output. */
int mask_out_escaped(struct mask_stream *s, const char *p, size_t n, bool form);
/* Count one value acted on by `rule` (found as `entity`, or -1). */
void mask_count(struct mask_stream *s, int rule, int entity);
/* Record an error; returns what onError says to do with the affected bytes. */
enum policy_on_error mask_note_error(struct mask_stream *s, enum mm_reason reason);
/* The action of `rule` on one value, appended to s->act. */
int mask_apply_rule(struct mask_stream *s, int rule, int entity, const char *p, size_t n);
/* textscan_emit_fn over a struct scan_ctx: plain runs copied (escaped), matches rewritten. */
int mask_scan_emit(void *ctx, const char *p, size_t n, int entity);
/* Whether the decoded value p[0, n) holds a match of s->v_ents. */
bool mask_val_has_match(struct mask_stream *s, const char *p, size_t n);
/* Enter onError for `reason` (line: NDJSON, until the next newline). */
void mask_em_begin(struct mask_stream *s, enum mm_reason reason, bool line);
/* Bytes handed to onError (fallback scan or pass). */
int mask_em_put(struct mask_stream *s, const char *p, size_t n);
/* Leave onError, flushing the fallback scan. */
int mask_em_end(struct mask_stream *s);

/* ---- mask_paths.c ---- */

/* Pack path p of `rule` into the words w[0, *n) (w NULL: only count the words). */
void mask_fw_add(struct fpword *w, size_t *n, unsigned *used, const struct jpath *p, int rule);
/* A 6-bit hash of a member name: a 64-bit filter of the names paths name (most are in none). */
static inline unsigned mask_fp_key_hash(const char *key, size_t len)
{
	return (unsigned)(len * 7 +
			  (len ? (unsigned char)key[0] * 3 + (unsigned char)key[len - 1] : 0)) &
	       63;
}
/* The field rule of the value starting at the current depth, and whether paths live below. */
void mask_fp_value(struct mask_stream *s, const char *key, size_t key_len, uint32_t index,
		   int *rule, bool *alive);

/* ---- mask_json.c ---- */

/* Start a JSON document (NDJSON: the next line). */
int mask_json_reset_doc(struct mask_stream *s);
/* One chunk of a JSON or NDJSON body. */
int mask_json_feed(struct mask_stream *s, const char *cp, size_t n);
/* End of a JSON or NDJSON body: a truncated document goes to onError. */
int mask_json_finish(struct mask_stream *s);

/* ---- mask_form.c ---- */

int mask_form_feed(struct mask_stream *s, const char *p, size_t n);
int mask_form_finish(struct mask_stream *s);

#endif
