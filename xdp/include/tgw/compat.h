/* Portability for headers shared by BPF C, C11 and C++20 (STYLE.md rule 2). */
#ifndef TGW_COMPAT_H
#define TGW_COMPAT_H

#include <linux/types.h>

#if defined(__cplusplus)
#define TGW_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define TGW_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define TGW_OFFSETOF(type, member) __builtin_offsetof(type, member)

#endif /* TGW_COMPAT_H */
