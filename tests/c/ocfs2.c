/*
 * ocfs2-tools' libo2dlm: dlopen("libdlm_lt.so.3") and four dlsym()s,
 * NOQUEUE trylocks, always with a 32-byte LVB; "rc ? errno : sb_status".
 */
#include "common.h"

typedef dlm_lshandle_t (*create_fn)(const char *, mode_t);
typedef int (*release_fn)(const char *, dlm_lshandle_t, int);
typedef int (*lock_wait_fn)(dlm_lshandle_t, uint32_t, struct dlm_lksb *, uint32_t,
			    const void *, unsigned int, uint32_t, void *,
			    void (*)(void *), void *);
typedef int (*unlock_wait_fn)(dlm_lshandle_t, uint32_t, uint32_t, struct dlm_lksb *);

static create_fn create;
static release_fn release;
static lock_wait_fn lock_wait;
static unlock_wait_fn unlock_wait;

/* o2dlm_lock_dlmfs-style result: rc ? errno : sb_status */
static int trylock(dlm_lshandle_t h, int mode, struct dlm_lksb *lksb, int convert, const char *name)
{
	uint32_t flags = LKF_NOQUEUE | LKF_VALBLK | (convert ? LKF_CONVERT : 0);
	errno = 0;
	int rc = lock_wait(h, mode, lksb, flags, name, strlen(name), 0, NULL, NULL, NULL);
	return rc ? errno : lksb->sb_status;
}

int main(void)
{
	void *lib = dlopen("libdlm_lt.so.3", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		FAIL("dlopen: %s", dlerror());
	create = (create_fn)dlsym(lib, "dlm_create_lockspace");
	release = (release_fn)dlsym(lib, "dlm_release_lockspace");
	lock_wait = (lock_wait_fn)dlsym(lib, "dlm_ls_lock_wait");
	unlock_wait = (unlock_wait_fn)dlsym(lib, "dlm_ls_unlock_wait");
	EXPECT(create && release && lock_wait && unlock_wait);
	assert_ours((void *)lock_wait);
	/* libdlm_lt has no thread functions. */
	EXPECT(dlsym(lib, "dlm_pthread_init") == NULL);

	dlm_lshandle_t a = create("o2test", 0600);
	dlm_lshandle_t b = create("o2test", 0600);
	EXPECT(a && b);
	char la[DLM_LVB_LEN] = { 0 }, lb[DLM_LVB_LEN] = { 0 };
	struct dlm_lksb ka = { .sb_lvbptr = la }, kb = { .sb_lvbptr = lb };

	EXPECT_EQ(trylock(a, LKM_EXMODE, &ka, 0, "M000000000000000000000"), 0);
	EXPECT_EQ(trylock(b, LKM_PRMODE, &kb, 0, "M000000000000000000000"), EAGAIN);
	strcpy(la, "ocfs2 lvb");
	EXPECT_EQ(trylock(a, LKM_PRMODE, &ka, 1, "M000000000000000000000"), 0);
	EXPECT_EQ(trylock(b, LKM_PRMODE, &kb, 0, "M000000000000000000000"), 0);
	EXPECT(strcmp(lb, "ocfs2 lvb") == 0);

	EXPECT_EQ(unlock_wait(b, kb.sb_lkid, 0, &kb), 0);
	EXPECT_EQ(kb.sb_status, EUNLOCK);
	EXPECT_EQ(unlock_wait(a, ka.sb_lkid, 0, &ka), 0);
	EXPECT_EQ(ka.sb_status, EUNLOCK);
	/* o2dlm releases with force 0, once per create, as with C: the
	 * first drops one creation count, the second removes it. */
	EXPECT_EQ(release("o2test", b, 0), 0);
	EXPECT_EQ(release("o2test", a, 0), 0);
	dlm_lshandle_t (*open_ls)(const char *) =
		(dlm_lshandle_t (*)(const char *))dlsym(lib, "dlm_open_lockspace");
	EXPECT(open_ls);
	errno = 0;
	EXPECT(open_ls("o2test") == NULL);
	EXPECT_EQ(errno, ENOENT);
	dlclose(lib);
	printf("all ok\n");
	return 0;
}
