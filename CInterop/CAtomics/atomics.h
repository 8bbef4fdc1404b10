/*
 * Atomic adds and loads on counters that every nginx worker shares (the
 * status page's counters, in nginx's shared memory): one locked add on the
 * request path, never a lock. Inline, so that Swift compiles them in place.
 */

#ifndef _SMS_ATOMICS_H_INCLUDED_
#define _SMS_ATOMICS_H_INCLUDED_

#include <stdint.h>


static inline void
sms_atomic_add(int64_t *counter, int64_t n)
{
    (void) __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}


static inline int64_t
sms_atomic_load(const int64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}


/* 1 when *counter was expected and is now desired */
static inline int
sms_atomic_cas(int64_t *counter, int64_t expected, int64_t desired)
{
    return __atomic_compare_exchange_n(counter, &expected, desired, 0,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}


#endif /* _SMS_ATOMICS_H_INCLUDED_ */
