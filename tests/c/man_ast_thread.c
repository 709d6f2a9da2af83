/*
 * The first example of the original libdlm(3) man page: a lockspace with
 * its own AST thread; asynchronous lock and unlock whose completions
 * arrive on that thread and wake the main thread.  libdlm (threads).
 */
#include "common.h"
#include <pthread.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ast_count;
static pthread_t ast_thread;

static void ast_routine(void *arg)
{
	struct dlm_lksb *lksb = arg;
	(void)lksb;
	pthread_mutex_lock(&mu);
	ast_thread = pthread_self();
	ast_count++;
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&mu);
}

static void wait_for_ast(int n)
{
	pthread_mutex_lock(&mu);
	while (ast_count < n)
		pthread_cond_wait(&cond, &mu);
	pthread_mutex_unlock(&mu);
}

int main(void)
{
	struct dlm_lksb lksb;
	dlm_lshandle_t lockspace;
	int status;

	assert_ours((void *)dlm_ls_pthread_init);
	lockspace = dlm_create_lockspace("TESTLS", 0660);
	if (!lockspace)
		FAIL("dlm_create_lockspace: %s", strerror(errno));
	status = dlm_ls_pthread_init(lockspace);
	EXPECT_EQ(status, 0);

	memset(&lksb, 0, sizeof(lksb));
	status = dlm_ls_lock(lockspace, LKM_PRMODE, &lksb, LKF_NOQUEUE, "MyLock", strlen("MyLock"),
			     0, ast_routine, &lksb, NULL, NULL);
	EXPECT_EQ(status, 0);
	wait_for_ast(1);
	EXPECT_EQ(lksb.sb_status, 0);
	EXPECT(!pthread_equal(ast_thread, pthread_self()));
	printf("lock granted, id %u\n", lksb.sb_lkid);

	status = dlm_ls_unlock(lockspace, lksb.sb_lkid, 0, &lksb, &lksb);
	EXPECT_EQ(status, 0);
	wait_for_ast(2);
	EXPECT_EQ(lksb.sb_status, EUNLOCK);

	status = dlm_release_lockspace("TESTLS", lockspace, 1);
	EXPECT_EQ(status, 0);
	printf("all ok\n");
	return 0;
}
