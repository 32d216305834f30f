// Lock annotations (Clang's thread-safety attributes, as LevelDB's
// port/thread_annotations.h and Abseil's): which mutex guards a member,
// which a function needs held. Checked by `clang -Wthread-safety` where the
// mutex type is annotated; no-ops under GCC, where they still say in the
// declaration what a comment used to.
// https://clang.llvm.org/docs/ThreadSafetyAnalysis.html
#pragma once

#if defined(__clang__)
#define TPDE_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define TPDE_THREAD_ANNOTATION(x)
#endif

// The member is read and written only with `mu` held.
#define TPDE_GUARDED_BY(mu) TPDE_THREAD_ANNOTATION(guarded_by(mu))
// The pointee of the member is accessed only with `mu` held.
#define TPDE_PT_GUARDED_BY(mu) TPDE_THREAD_ANNOTATION(pt_guarded_by(mu))
// The caller holds these mutexes.
#define TPDE_REQUIRES(...) TPDE_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The caller must not hold these mutexes (the function takes them).
#define TPDE_EXCLUDES(...) TPDE_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
