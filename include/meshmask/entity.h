/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One table of entity types: the policy language names them, the detectors find them, metrics
 * and audit label counts with them. Names follow Microsoft Presidio. The order is part of the
 * metrics ABI: append only.
 */
#ifndef MESHMASK_ENTITY_H
#define MESHMASK_ENTITY_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define MM_ENTITIES(X)                                                                             \
	X(US_SSN)                                                                                  \
	X(CREDIT_CARD)                                                                             \
	X(EMAIL_ADDRESS)                                                                           \
	X(PHONE_NUMBER)                                                                            \
	X(IBAN_CODE)                                                                               \
	X(IP_ADDRESS)                                                                              \
	X(JWT)                                                                                     \
	X(AWS_ACCESS_KEY_ID)

enum mm_entity {
#define MM_ENTITY_ENUM_(n) MM_ENT_##n,
	MM_ENTITIES(MM_ENTITY_ENUM_)
#undef MM_ENTITY_ENUM_
	MM_ENT__COUNT
};

#define MM_ENT_BIT(e) (1u << (e))
#define MM_ENT_ALL ((1u << MM_ENT__COUNT) - 1)

/* "CREDIT_CARD" for MM_ENT_CREDIT_CARD; NULL when out of range. */
static inline const char *mm_entity_name(unsigned int e)
{
	static const char *const names[] = {
#define MM_ENTITY_NAME_(n) #n,
		MM_ENTITIES(MM_ENTITY_NAME_)
#undef MM_ENTITY_NAME_
	};
	return e < MM_ENT__COUNT ? names[e] : NULL;
}

/* The entity called `name` (exact, case-sensitive), or -ENOENT. */
static inline int mm_entity_from_name(const char *name)
{
	for (unsigned int i = 0; name && i < MM_ENT__COUNT; i++)
		if (!strcmp(name, mm_entity_name(i)))
			return (int)i;
	return -ENOENT;
}

#endif
