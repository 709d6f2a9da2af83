/*
 * Shared by the C test programs: checks that print what failed and exit,
 * and a check that the libdlm this program runs with is ours.
 *
 * Compiled against our include/libdlm.h and against Debian's
 * /usr/include/libdlm.h: only the header's public API is used.
 */
#ifndef DLM_TEST_COMMON_H
#define DLM_TEST_COMMON_H

#define _GNU_SOURCE
#include <sys/types.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libdlm.h>

#define FAIL(...) do { \
	fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fprintf(stderr, "\n"); \
	exit(1); \
} while (0)

/* expect(got == want), printing both as long long */
#define EXPECT_EQ(got, want) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	if (g_ != w_) \
		FAIL("%s == %lld, expected %s == %lld", #got, g_, #want, w_); \
} while (0)

#define EXPECT(cond) do { if (!(cond)) FAIL("expected %s", #cond); } while (0)

/* A call returning 0 or -1/errno that must succeed. */
#define OK(call) do { \
	errno = 0; \
	int r_ = (call); \
	if (r_ != 0) FAIL("%s returned %d, errno %d (%s)", #call, r_, errno, strerror(errno)); \
} while (0)

/* A call that must fail with -1 and this errno. */
#define FAILS_WITH(call, err) do { \
	errno = 0; \
	int r_ = (call); \
	if (r_ != -1 || errno != (err)) \
		FAIL("%s returned %d errno %d, expected -1 errno %d", #call, r_, errno, (err)); \
} while (0)

/*
 * The library that provides `sym` must live in $DLM_TEST_LIBDIR: Debian's
 * libdlm3 is installed beside ours, and a test of the wrong library
 * proves nothing.
 */
static inline void assert_ours(void *sym)
{
	Dl_info info;
	const char *dir = getenv("DLM_TEST_LIBDIR");
	char want[4096], got[4096];

	if (!dir)
		FAIL("DLM_TEST_LIBDIR is not set");
	if (!dladdr(sym, &info) || !info.dli_fname)
		FAIL("dladdr found no library");
	if (!realpath(dir, want) || !realpath(info.dli_fname, got))
		FAIL("realpath failed for %s or %s", dir, info.dli_fname);
	/* Ours are links in DLM_TEST_LIBDIR to the build's .so files. */
	char link[4096];
	snprintf(link, sizeof(link), "%s/%s", dir, strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname);
	char linked[4096];
	if (!realpath(link, linked) || strcmp(linked, got) != 0)
		FAIL("libdlm loaded from %s (%s), not from %s", info.dli_fname, got, dir);
}

#endif
