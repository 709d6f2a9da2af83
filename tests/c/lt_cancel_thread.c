/*
 * libdlm_lt, two threads: one blocks in dlm_ls_lock_wait (queued behind a
 * granted EX), the other cancels that request synchronously with the same
 * lksb. The blocked call reads its completion with the dispatch role taken
 * by compare-and-swap, before noting the request in flight under the state
 * lock; the cancel must still see a request to cancel (not EBUSY), and
 * both calls end with ECANCEL.
 */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static dlm_lshandle_t ls;
static struct dlm_lksb blocked;
static volatile pid_t blocked_tid;
static int blocked_rv, blocked_errno;

static void *lock_waiter(void *arg)
{
	(void)arg;
	blocked_tid = (pid_t)syscall(SYS_gettid);
	errno = 0;
	blocked_rv = dlm_ls_lock_wait(ls, LKM_EXMODE, &blocked, 0, "r", 1, 0, NULL, NULL, NULL);
	blocked_errno = errno;
	return NULL;
}

/* Whether thread `tid` sleeps (in its read: nothing else can block it). */
static int sleeping(pid_t tid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && p[2] == 'S';
}

int main(void)
{
	struct dlm_lksb held = { 0 };
	pthread_t t;

	assert_ours((void *)dlm_ls_lock_wait);
	ls = dlm_create_lockspace("LTCANCEL", 0600);
	if (!ls)
		FAIL("dlm_create_lockspace: %s", strerror(errno));
	OK(dlm_ls_lock_wait(ls, LKM_EXMODE, &held, 0, "r", 1, 0, NULL, NULL, NULL));
	EXPECT_EQ(held.sb_status, 0);

	if (pthread_create(&t, NULL, lock_waiter, NULL))
		FAIL("pthread_create");
	/* Until the request was sent and its caller sleeps in the read. */
	for (int i = 0; !(blocked_tid && ((volatile struct dlm_lksb *)&blocked)->sb_lkid &&
			 sleeping(blocked_tid)); i++) {
		if (i > 100000)
			FAIL("the second lock_wait never blocked");
		usleep(100);
	}
	errno = 0;
	int rv = dlm_ls_unlock_wait(ls, blocked.sb_lkid, LKF_CANCEL, &blocked);
	EXPECT_EQ(rv, -1);
	EXPECT_EQ(errno, ECANCEL);
	pthread_join(t, NULL);
	EXPECT_EQ(blocked_rv, -1);
	EXPECT_EQ(blocked_errno, ECANCEL);
	EXPECT_EQ(blocked.sb_status, ECANCEL);

	OK(dlm_ls_unlock_wait(ls, held.sb_lkid, 0, &held));
	EXPECT_EQ(held.sb_status, EUNLOCK);
	EXPECT_EQ(dlm_release_lockspace("LTCANCEL", ls, 1), 0);
	printf("all ok\n");
	return 0;
}
