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

/* Qualifies a pointer to what a BPF program keeps in .rodata (`const volatile` objects the
 * loader writes before the program loads): read through a plain pointer, clang folds the
 * loads to the zero initializer. Elsewhere the same tables are ordinary memory. */
#if defined(__bpf__)
#define TGW_RODATA volatile
#else
#define TGW_RODATA
#endif

#endif /* TGW_COMPAT_H */
