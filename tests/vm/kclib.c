/*
 * kclib: libdlm API scenarios (docs/semantics.md D.6: L1, L2, L3, L7, L9, L12, L13;
 * L15 a bad mode, L16 a lockspace created twice and released twice)
 * and a lock/unlock timing loop, for the kernel DLM in a vmtest guest.
 *
 * Built four times on the host by tests/vm/suite.sh: against Debian's
 * libdlm3 and against ours, each as the lt build (-ldlm_lt) and the
 * threads build (-pthread -ldlm).  tests/tests/kernel_clib.rs runs them
 * in the guest and compares what they print: Debian's and ours must print
 * the same lines for the same flavour, except where README's table of
 * deliberate differences says otherwise.  The program asserts nothing
 * itself; it prints what happened.
 *
 *   kclib scen LOCKSPACE      one line per observation
 *   kclib bench LOCKSPACE N   N pairs of EX dlm_ls_lock_wait +
 *                             dlm_ls_unlock_wait; prints "pair_ns X"
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <libdlm.h>

#ifdef _REENTRANT
#define FLAVOUR "threads"
#else
#define FLAVOUR "lt"
#endif

static dlm_lshandle_t ls, other;

/* callbacks: which routine, which argument, in order */
static volatile int ncalls, reserved;
static char calls[64][32];

/* Records a callback; a record is complete before ncalls counts it (the
 * threads build has one AST thread per handle). */
static void note(const char *what, void *arg)
{
	int i = __atomic_fetch_add(&reserved, 1, __ATOMIC_SEQ_CST);
	if (i < 64)
		snprintf(calls[i], sizeof(calls[i]), "%s(%ld)", what, (long)(intptr_t)arg);
	while (__atomic_load_n(&ncalls, __ATOMIC_SEQ_CST) != i)
		;
	__atomic_store_n(&ncalls, i + 1, __ATOMIC_SEQ_CST);
}
static void ast(void *arg) { note("ast", arg); }
static void bast(void *arg) { note("bast", arg); }

/* Waits until `want` callbacks were recorded: the AST thread delivers them
 * in the threads build, dlm_dispatch on `h` in the lt build.  Gives up
 * after 10 s (prints "timeout"). */
static void wait_calls(dlm_lshandle_t h, int want)
{
	for (int i = 0; i < 1000 && ncalls < want; i++) {
#ifdef _REENTRANT
		(void)h;
		usleep(10000);
#else
		struct pollfd p = { .fd = dlm_ls_get_fd(h), .events = POLLIN };
		if (poll(&p, 1, 10) == 1)
			dlm_dispatch(p.fd);
#endif
	}
	if (ncalls < want)
		printf("  timeout waiting for %d callbacks (have %d)\n", want, ncalls);
}

static void print_calls(const char *tag, int from)
{
	printf("%s calls:", tag);
	for (int i = from; i < ncalls; i++)
		printf(" %s", calls[i]);
	printf("\n");
}

#define RES(s) (s), (int)strlen(s)

static int lock_wait(dlm_lshandle_t h, int mode, uint32_t flags, const char *name, struct dlm_lksb *sb)
{
	memset(sb, 0, sizeof(*sb));
	errno = 0;
	return dlm_ls_lock_wait(h, mode, sb, flags, RES(name), 0, NULL, NULL, NULL);
}

static void l1(void)
{
	struct dlm_lksb a, b;
	lock_wait(other, LKM_EXMODE, 0, "r1", &a);
	int r = lock_wait(ls, LKM_PRMODE, LKF_NOQUEUE, "r1", &b);
	printf("L1 ret=%d errno=%d sb_status=%d\n", r, r ? errno : 0, b.sb_status);
}

static void l2(void)
{
	struct dlm_lksb a;
	int r = lock_wait(ls, LKM_EXMODE, 0, "r2", &a);
	errno = 0;
	int u = dlm_ls_unlock_wait(ls, a.sb_lkid, 0, &a);
	printf("L2 lock=%d unlock=%d errno=%d sb_status=%d\n", r, u, u ? errno : 0, a.sb_status);
#ifndef _REENTRANT
	/* lt: errno is the unlock's status after success (EUNLOCK). */
	printf("L2 errno after unlock_wait=%d\n", errno);
#endif
}

/* A mode above EX: EINPROG is in the lksb before the kernel's EINVAL. */
static void l15(void)
{
	struct dlm_lksb a;
	memset(&a, 0, sizeof(a));
	errno = 0;
	int r = dlm_ls_lock_wait(ls, 6, &a, 0, RES("r15"), 0, NULL, NULL, NULL);
	printf("L15 bad mode wait=%d errno=%d sb_status=%d\n", r, errno, a.sb_status);
	memset(&a, 0, sizeof(a));
	errno = 0;
	r = dlm_ls_lock(ls, 6, &a, 0, RES("r15"), 0, ast, (void *)15, NULL, NULL);
	printf("L15 bad mode async=%d errno=%d sb_status=%d\n", r, errno, a.sb_status);
}

/* A lockspace created twice by this process, released on both handles
 * (the first while the second is open): both releases return 0 and the
 * lockspace is gone, in the kernel too (kernel_clib.rs checks sysfs
 * after the program). */
static void l16(const char *name)
{
	char twice[64];
	snprintf(twice, sizeof(twice), "%sd", name);
	dlm_lshandle_t a = dlm_create_lockspace(twice, 0600);
	dlm_lshandle_t b = dlm_create_lockspace(twice, 0600);
	printf("L16 created twice=%d\n", a != NULL && b != NULL && a != b);
	if (!a || !b)
		return;
	errno = 0;
	int r1 = dlm_release_lockspace(twice, a, 0);
	int e1 = r1 ? errno : 0;
	errno = 0;
	int r2 = dlm_release_lockspace(twice, b, 0);
	int e2 = r2 ? errno : 0;
	printf("L16 release=%d errno=%d release=%d errno=%d\n", r1, e1, r2, e2);
	errno = 0;
	dlm_lshandle_t again = dlm_open_lockspace(twice);
	printf("L16 open after=%d errno=%d\n", again != NULL, again ? 0 : errno);
	if (again)
		dlm_close_lockspace(again);
}

static void l3(void)
{
	struct dlm_lksb pr, held, lksb2;
	lock_wait(ls, LKM_PRMODE, 0, "r3", &pr);
	lock_wait(other, LKM_PRMODE, 0, "r3", &held);
	int base = ncalls;
	errno = 0;
	int c = dlm_ls_lock(ls, LKM_EXMODE, &pr, LKF_CONVERT, RES("r3"), 0, ast, (void *)1, NULL, NULL);
	memset(&lksb2, 0, sizeof(lksb2));
	int u = dlm_ls_unlock(ls, pr.sb_lkid, LKF_CANCEL, &lksb2, (void *)2);
	wait_calls(ls, base + 1);
	printf("L3 convert=%d cancel=%d lksb2.sb_status=%d\n", c, u, lksb2.sb_status);
	print_calls("L3", base);
	struct dlm_lksb probe;
	int r = lock_wait(other, LKM_CWMODE, LKF_NOQUEUE, "r3", &probe);
	printf("L3 still PR: CW NOQUEUE ret=%d sb_status=%d\n", r, probe.sb_status);
}

#ifdef _REENTRANT
/* lock_resource() exists only in the threads build */
static void l9(void)
{
	int id = 0, id2 = 0;
	errno = 0;
	int r = lock_resource("res9", LKM_EXMODE, 0, &id);
	printf("L9 lock_resource=%d id>0=%d\n", r, id > 0);
	errno = 0;
	r = lock_resource("res9", LKM_EXMODE, LKF_NOQUEUE, &id2);
	printf("L9 second=%d errno=%d\n", r, r ? errno : 0);
	errno = 0;
	r = unlock_resource(id);
	printf("L9 unlock_resource=%d errno=%d\n", r, errno);
}
#endif

static void l12(void)
{
	struct dlm_lksb a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	int base = ncalls;
	int r = dlm_ls_lock(ls, LKM_EXMODE, &a, 0, RES("r12"), 0, ast, (void *)12, bast, NULL);
	wait_calls(ls, base + 1);
	printf("L12 lock=%d sb_status=%d lkid>0=%d\n", r, a.sb_status, a.sb_lkid > 0);
	r = dlm_ls_lock(other, LKM_EXMODE, &b, 0, RES("r12"), 0, ast, (void *)13, NULL, NULL);
	wait_calls(ls, base + 2);
	printf("L12 other=%d\n", r);
	print_calls("L12", base);
}

#ifndef _REENTRANT
static void l13(void)
{
	struct dlm_lksb s[3];
	int base = ncalls;
	memset(s, 0, sizeof(s));
	int fd = dlm_ls_get_fd(ls);
	int before = fcntl(fd, F_GETFL);
	for (long i = 0; i < 3; i++) {
		char name[8];
		snprintf(name, sizeof(name), "r13%ld", i);
		dlm_ls_lock(ls, LKM_PRMODE, &s[i], 0, RES(name), 0, ast, (void *)(100 + i), NULL, NULL);
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	poll(&p, 1, 10000);
	int r = dlm_dispatch(fd);
	while (ncalls < base + 3 && poll(&p, 1, 10000) == 1)
		dlm_dispatch(fd);
	printf("L13 dispatch=%d flags_restored=%d\n", r, fcntl(fd, F_GETFL) == before);
	print_calls("L13", base);
}
#endif

static void l7(const char *name)
{
	struct dlm_lksb a;
	lock_wait(other, LKM_EXMODE, 0, "r7", &a);
	errno = 0;
	int r = dlm_release_lockspace(name, ls, 0);
	printf("L7 release=%d errno=%d\n", r, errno);
	dlm_lshandle_t again = dlm_open_lockspace(name);
	printf("L7 still there=%d\n", again != NULL);
	if (again)
		dlm_close_lockspace(again);
}

static const char *which_lib(void)
{
	Dl_info info;
	if (dladdr((void *)dlm_ls_lock, &info) && info.dli_fname)
		return info.dli_fname;
	return "?";
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: kclib scen|bench LOCKSPACE [N]\n");
		return 2;
	}
	const char *name = argv[2];
	ls = dlm_create_lockspace(name, 0600);
	if (!ls) {
		printf("create %s failed: errno %d\n", name, errno);
		return 1;
	}
#ifdef _REENTRANT
	dlm_ls_pthread_init(ls);
#endif
	fprintf(stderr, "kclib %s: %s\n", FLAVOUR, which_lib());
	if (strcmp(argv[1], "bench") == 0) {
		int n = argc > 3 ? atoi(argv[3]) : 1000;
		struct dlm_lksb sb;
		double t0 = now();
		for (int i = 0; i < n; i++) {
			if (lock_wait(ls, LKM_EXMODE, 0, "bench", &sb) != 0 || sb.sb_status != 0) {
				printf("lock failed: errno %d status %d\n", errno, sb.sb_status);
				return 1;
			}
			if (dlm_ls_unlock_wait(ls, sb.sb_lkid, 0, &sb) != 0) {
				printf("unlock failed: errno %d\n", errno);
				return 1;
			}
		}
		printf("pair_ns %.0f\n", (now() - t0) / n);
		dlm_release_lockspace(name, ls, 1);
		return 0;
	}
	other = dlm_open_lockspace(name);
#ifdef _REENTRANT
	dlm_ls_pthread_init(other);
#endif
	printf("flavour %s\n", FLAVOUR);
	l1();
	l2();
	l3();
#ifdef _REENTRANT
	l9();
#endif
	l12();
#ifndef _REENTRANT
	l13();
#endif
	l15();
	l16(name);
	l7(name);
	printf("done\n");
	return 0;
}
