/*
 * Scenarios L1-L14 (docs/semantics.md D.6) and the deliberate
 * differences of README's table, through the C API.  Built twice: against
 * libdlm_lt (no -pthread) and against libdlm (-pthread defines
 * _REENTRANT), with each flavour's expectations.
 */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#ifdef _REENTRANT
#include <pthread.h>
#endif

#define LS "scen"

static dlm_lshandle_t ls, other;

/* One record per callback. */
struct call { void *fn; void *arg; int status; uint32_t lkid; };
static struct call calls[64];
static volatile int ncalls;

static void ast(void *arg);
static void bast(void *arg);

static struct dlm_lksb *watch;	/* the lksb whose status the callbacks record */

static void record(void *fn, void *arg)
{
	struct call *c = &calls[ncalls];
	c->fn = fn;
	c->arg = arg;
	c->status = watch ? watch->sb_status : -1;
	c->lkid = watch ? watch->sb_lkid : 0;
	__atomic_add_fetch(&ncalls, 1, __ATOMIC_SEQ_CST);
}

static void ast(void *arg) { record((void *)ast, arg); }
static void bast(void *arg) { record((void *)bast, arg); }

/* Dispatches h until `want` callbacks were recorded in total. */
static void pump(dlm_lshandle_t h, int want)
{
	int fd = dlm_ls_get_fd(h);
	while (ncalls < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			FAIL("no callback within 10 s (have %d, want %d)", ncalls, want);
		OK(dlm_dispatch(fd));
	}
}

/* A synchronous lock on `h`; returns the lock id. */
static uint32_t lock_sync(dlm_lshandle_t h, int mode, uint32_t flags, const char *name)
{
	struct dlm_lksb lksb = { 0 };
	OK(dlm_ls_lock_wait(h, mode, &lksb, flags, name, strlen(name), 0, NULL, NULL, NULL));
	EXPECT_EQ(lksb.sb_status, 0);
	EXPECT(lksb.sb_lkid != 0);
	return lksb.sb_lkid;
}

static void unlock_sync(dlm_lshandle_t h, uint32_t id)
{
	struct dlm_lksb lksb = { 0 };
	OK(dlm_ls_unlock_wait(h, id, 0, &lksb));
	EXPECT_EQ(lksb.sb_status, EUNLOCK);
#ifndef _REENTRANT
	/* As C's lt build: errno is the status, EUNLOCK, after success. */
	EXPECT_EQ(errno, EUNLOCK);
#endif
}

static void l5_before_default(void)
{
	struct dlm_lksb lksb = { 0 };
	FAILS_WITH(dlm_unlock(1, 0, &lksb, NULL), ENOTCONN);
	FAILS_WITH(dlm_unlock_wait(1, 0, &lksb), ENOTCONN);
	FAILS_WITH(dlm_ls_unlock(NULL, 1, 0, &lksb, NULL), ENOTCONN);
	FAILS_WITH(dlm_ls_unlock(ls, 0, 0, &lksb, NULL), EINVAL);
	printf("L5 ok\n");
}

static void l1(void)
{
	struct dlm_lksb lksb = { 0 };
	uint32_t held = lock_sync(other, LKM_EXMODE, 0, "r1");
	errno = 0;
	int rv = dlm_ls_lock_wait(ls, LKM_PRMODE, &lksb, LKF_NOQUEUE, "r1", 2, 0, NULL, NULL, NULL);
#ifdef _REENTRANT
	EXPECT_EQ(rv, 0);
#else
	EXPECT_EQ(rv, -1);
	EXPECT_EQ(errno, EAGAIN);
#endif
	EXPECT_EQ(lksb.sb_status, EAGAIN);
	unlock_sync(other, held);
	printf("L1 ok\n");
}

static void l2(void)
{
	uint32_t id = lock_sync(ls, LKM_EXMODE, 0, "r2");
	unlock_sync(ls, id);
	printf("L2 ok\n");
}

static void l3(void)
{
	struct dlm_lksb lk = { 0 }, lk2 = { 0 };
	int base;
	uint32_t theirs = lock_sync(other, LKM_PRMODE, 0, "r3");
	uint32_t id = lock_sync(ls, LKM_PRMODE, 0, "r3");

	lk.sb_lkid = id;
	OK(dlm_ls_lock(ls, LKM_EXMODE, &lk, LKF_CONVERT, NULL, 0, 0, ast, (void *)0x31, NULL, NULL));
	EXPECT_EQ(lk.sb_status, EINPROG);	/* queued behind the other PR */
	base = ncalls;
	watch = &lk2;
	OK(dlm_ls_unlock(ls, id, LKF_CANCEL, &lk2, (void *)0x32));
	pump(ls, base + 1);
	EXPECT(calls[base].fn == (void *)ast);
	EXPECT(calls[base].arg == (void *)0x32);
	EXPECT_EQ(calls[base].status, ECANCEL);
	EXPECT_EQ(lk2.sb_status, ECANCEL);
	/* Still PR: a CW is refused. */
	struct dlm_lksb probe = { 0 };
	dlm_ls_lock_wait(other, LKM_CWMODE, &probe, LKF_NOQUEUE, "r3", 2, 0, NULL, NULL, NULL);
	EXPECT_EQ(probe.sb_status, EAGAIN);

	/* The synchronous cancel: lt -1/ECANCEL, threads 0 with ECANCEL. */
	lk.sb_lkid = id;
	OK(dlm_ls_lock(ls, LKM_EXMODE, &lk, LKF_CONVERT, NULL, 0, 0, ast, (void *)0x33, NULL, NULL));
	errno = 0;
	int rv = dlm_ls_unlock_wait(ls, id, LKF_CANCEL, &lk2);
#ifdef _REENTRANT
	EXPECT_EQ(rv, 0);
#else
	EXPECT_EQ(rv, -1);
	EXPECT_EQ(errno, ECANCEL);
#endif
	EXPECT_EQ(lk2.sb_status, ECANCEL);

	/* A second cancel is refused by the lock manager (U4). */
	FAILS_WITH(dlm_ls_unlock_wait(ls, id, LKF_CANCEL, &lk2), EINVAL);
	watch = NULL;
	unlock_sync(ls, id);

	/* Deliberate difference: a synchronous cancel of a granted lock,
	 * with nothing to cancel, returns (C hangs forever, U3): lt
	 * -1/EBUSY, threads 0 with EBUSY. */
	uint32_t granted = lock_sync(ls, LKM_EXMODE, 0, "r3b");
	errno = 0;
	rv = dlm_ls_unlock_wait(ls, granted, LKF_CANCEL, &lk2);
#ifdef _REENTRANT
	EXPECT_EQ(rv, 0);
#else
	EXPECT_EQ(rv, -1);
	EXPECT_EQ(errno, EBUSY);
#endif
	EXPECT_EQ(lk2.sb_status, EBUSY);
	unlock_sync(ls, granted);
	unlock_sync(other, theirs);
	printf("L3 ok\n");
}

static void l4(void)
{
	struct dlm_lksb lksb = { 0 };
	char name[65];
	memset(name, 'n', sizeof(name));
	FAILS_WITH(dlm_ls_lock(ls, LKM_NLMODE, &lksb, 0, "r", 1, 0, ast, NULL, NULL, (void *)1), ENOSYS);
	FAILS_WITH(dlm_ls_lock(ls, LKM_NLMODE, &lksb, LKF_VALBLK, "r", 1, 0, ast, NULL, NULL, NULL), EINVAL);
	FAILS_WITH(dlm_ls_lock(ls, LKM_NLMODE, &lksb, 0, name, 65, 0, ast, NULL, NULL, NULL), EINVAL);
	/* Deliberate: a mode above EX is refused, not truncated to 8 bits. */
	FAILS_WITH(dlm_ls_lock(ls, 261, &lksb, 0, "r", 1, 0, ast, NULL, NULL, NULL), EINVAL);
	/* As C: EINPROG is set before the mode is refused (C: by the
	 * kernel), in both the asynchronous and the synchronous call. */
	lksb.sb_status = 4242;
	FAILS_WITH(dlm_ls_lock_wait(ls, 6, &lksb, 0, "r", 1, 0, NULL, NULL, NULL), EINVAL);
	EXPECT_EQ(lksb.sb_status, EINPROG);
	lksb.sb_status = 4242;
	FAILS_WITH(dlm_ls_lock(ls, 6, &lksb, 0, "r", 1, 0, ast, NULL, NULL, NULL), EINVAL);
	EXPECT_EQ(lksb.sb_status, EINPROG);
	printf("L4 ok\n");
}

static void l6_l7(void)
{
	dlm_lshandle_t a = dlm_create_lockspace("x", 0600);
	dlm_lshandle_t b = dlm_create_lockspace("x", 0600);
	EXPECT(a && b && a != b);
	errno = 0;
	EXPECT(dlm_new_lockspace("x", 0600, DLM_LSFL_NEWEXCL) == NULL);
	EXPECT_EQ(errno, EEXIST);
	printf("L6 ok\n");

	/* Created twice, released on both handles, as C: each release
	 * drops one creation count (the first while the other created
	 * handle is open, even with a lock held through it) and the
	 * lockspace is gone after the second. */
	uint32_t id = lock_sync(b, LKM_EXMODE, 0, "held");
	OK(dlm_release_lockspace("x", a, 0));
	unlock_sync(b, id);
	OK(dlm_release_lockspace("x", b, 0));
	errno = 0;
	EXPECT(dlm_open_lockspace("x") == NULL);
	EXPECT_EQ(errno, ENOENT);

	/* Deliberate: the last creation count's release while a handle of
	 * this process from dlm_open_lockspace is open reports EBUSY at
	 * once (C blocks forever); the lockspace stays. */
	dlm_lshandle_t c = dlm_create_lockspace("y", 0600);
	dlm_lshandle_t d = dlm_open_lockspace("y");
	EXPECT(c && d);
	FAILS_WITH(dlm_release_lockspace("y", c, 0), EBUSY);
	OK(dlm_close_lockspace(d));
	d = dlm_open_lockspace("y");
	EXPECT(d != NULL);
	OK(dlm_release_lockspace("y", d, 0));
	errno = 0;
	EXPECT(dlm_open_lockspace("y") == NULL);
	EXPECT_EQ(errno, ENOENT);
	printf("L7 ok\n");
}

static void l10(void)
{
	uint32_t a = 9, b = 9, c = 9;
	OK(dlm_kernel_version(&a, &b, &c));
	EXPECT_EQ(a, 6);
	EXPECT_EQ(b, 0);
	dlm_library_version(&a, &b, &c);
	EXPECT_EQ(a, 6);
	EXPECT_EQ(b, 0);
	EXPECT_EQ(c, 2);
	printf("L10 ok\n");
}

static void l12(void)
{
	struct dlm_lksb mine = { 0 }, theirs = { 0 };
	int base = ncalls;
	watch = &mine;
	OK(dlm_ls_lock(ls, LKM_EXMODE, &mine, 0, "r12", 3, 0, ast, (void *)0x12, bast, NULL));
	EXPECT(mine.sb_lkid != 0);
	pump(ls, base + 1);
	EXPECT(calls[base].fn == (void *)ast);
	EXPECT(calls[base].arg == (void *)0x12);
	EXPECT_EQ(calls[base].status, 0);
	EXPECT_EQ(calls[base].lkid, mine.sb_lkid);
	/* Deliberate: a bast leaves the lksb alone. */
	mine.sb_status = 4242;
	watch = NULL;
	OK(dlm_ls_lock(other, LKM_EXMODE, &theirs, 0, "r12", 3, 0, ast, (void *)0x99, NULL, NULL));
	pump(ls, base + 2);
	EXPECT(calls[base + 1].fn == (void *)bast);
	EXPECT(calls[base + 1].arg == (void *)0x12);
	EXPECT_EQ(mine.sb_status, 4242);
	mine.sb_status = 0;
	unlock_sync(ls, mine.sb_lkid);	/* its completion runs ast too */
	/* The other opener is granted now; take its completion. */
	pump(other, ncalls + 1);
	EXPECT_EQ(theirs.sb_status, 0);
	unlock_sync(other, theirs.sb_lkid);
	printf("L12 ok\n");
}

static void l13(void)
{
	struct dlm_lksb l[3];
	int fd = dlm_ls_get_fd(ls);
	int flags = fcntl(fd, F_GETFL);
	int base = ncalls;
	const char *names[3] = { "a13", "b13", "c13" };
	memset(l, 0, sizeof(l));
	for (int i = 0; i < 3; i++)
		OK(dlm_ls_lock(ls, LKM_PRMODE, &l[i], 0, names[i], 3, 0, ast, (void *)(long)(0x130 + i), NULL, NULL));
	/* Nothing runs before the dispatch. */
	EXPECT_EQ(ncalls, base);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	EXPECT_EQ(poll(&p, 1, 10000), 1);
	OK(dlm_dispatch(fd));
	EXPECT_EQ(ncalls, base + 3);
	for (int i = 0; i < 3; i++) {
		EXPECT(calls[base + i].arg == (void *)(long)(0x130 + i));
		EXPECT_EQ(l[i].sb_status, 0);
	}
	EXPECT_EQ(fcntl(fd, F_GETFL), flags);
	/* Drained: another dispatch finds nothing and returns 0. */
	OK(dlm_dispatch(fd));
	EXPECT_EQ(ncalls, base + 3);
	for (int i = 0; i < 3; i++)
		unlock_sync(ls, l[i].sb_lkid);
	printf("L13 ok\n");
}

static void l14(void)
{
	struct dlm_lksb lksb = { 0 };
	int base = ncalls;
	OK(dlm_ls_lock(ls, LKM_EXMODE, &lksb, 0, "r14", 3, 0, ast, (void *)0x14, NULL, NULL));
	pump(ls, base + 1);
	watch = &lksb;
	OK(dlm_ls_unlock(ls, lksb.sb_lkid, 0, &lksb, NULL));
	pump(ls, base + 2);
	EXPECT(calls[base + 1].fn == (void *)ast);
	EXPECT(calls[base + 1].arg == (void *)0x14);
	EXPECT_EQ(calls[base + 1].status, EUNLOCK);
	EXPECT_EQ(lksb.sb_status, EUNLOCK);
	watch = NULL;
	printf("L14 ok\n");
}

#ifdef _REENTRANT
static dlm_lshandle_t threaded;
static pthread_t main_thread;
static volatile int inner_rv = -99, inner_status = -99, inner_on_main = -1;
static void l8_ast(void *arg)
{
	struct dlm_lksb lksb = { 0 };
	(void)arg;
	inner_on_main = pthread_equal(pthread_self(), main_thread);
	inner_rv = dlm_ls_lock_wait(threaded, LKM_PRMODE, &lksb, 0, "r8b", 3, 0, NULL, NULL, NULL);
	inner_status = lksb.sb_status;
	if (inner_rv == 0)
		dlm_ls_unlock_wait(threaded, lksb.sb_lkid, 0, &lksb);
	__atomic_store_n(&ncalls, ncalls + 1, __ATOMIC_SEQ_CST);
}

static void l8_l11(void)
{
	struct dlm_lksb lksb = { 0 };
	main_thread = pthread_self();
	threaded = dlm_open_lockspace(LS);
	EXPECT(threaded != NULL);
	OK(dlm_ls_pthread_init(threaded));
	FAILS_WITH(dlm_ls_pthread_init(threaded), EEXIST);
	printf("L11 ok\n");
	int base = ncalls;
	OK(dlm_ls_lock(threaded, LKM_EXMODE, &lksb, 0, "r8", 2, 0, l8_ast, NULL, NULL, NULL));
	while (__atomic_load_n(&ncalls, __ATOMIC_SEQ_CST) < base + 1)
		usleep(1000);
	EXPECT_EQ(inner_on_main, 0);
	EXPECT_EQ(inner_rv, 0);
	EXPECT_EQ(inner_status, 0);
	/* A _wait from another thread, served by the AST thread. */
	uint32_t id = lock_sync(threaded, LKM_NLMODE, 0, "r8c");
	unlock_sync(threaded, id);
	/* Closing stops the thread; the lock is released with the handle. */
	OK(dlm_close_lockspace(threaded));
	uint32_t ex = lock_sync(ls, LKM_EXMODE, LKF_NOQUEUE, "r8");
	unlock_sync(ls, ex);
	printf("L8 ok\n");
}

static void l9(void)
{
	int id = 0, id2 = 0;
	OK(lock_resource("res", LKM_EXMODE, 0, &id));
	EXPECT(id > 0);
	FAILS_WITH(lock_resource("res", LKM_EXMODE, LKF_NOQUEUE, &id2), EAGAIN);
	errno = 0;
	EXPECT_EQ(unlock_resource(id), 0);
	EXPECT_EQ(errno, EUNLOCK);
	OK(dlm_pthread_cleanup());
	FAILS_WITH(unlock_resource(id), ENOTCONN);
	printf("L9 ok\n");
}
#endif

int main(void)
{
	assert_ours((void *)dlm_ls_lock);
	ls = dlm_new_lockspace(LS, 0600, 0);
	if (!ls)
		FAIL("dlm_new_lockspace: %s", strerror(errno));
	other = dlm_open_lockspace(LS);
	EXPECT(other != NULL);
	setvbuf(stdout, NULL, _IONBF, 0);

	l5_before_default();
	l1();
	l2();
	l3();
	l4();
	l6_l7();
	l10();
	l12();
	l13();
	l14();
#ifdef _REENTRANT
	l8_l11();
	l9();
#endif
	OK(dlm_close_lockspace(other));
	OK(dlm_release_lockspace(LS, ls, 0));
	printf("all ok\n");
	return 0;
}
