//! [`c_exports!`](crate::c_exports): the one macro that generates the 21
//! `#[no_mangle]` functions both C libraries export. It expands only in
//! the two cdylib crates, so no symbol is exported by dlm-core itself.

/// Generates the 21 exports common to `libdlm.so.3` and
/// `libdlm_lt.so.3`: thin `extern "C"` shims over [`crate::cabi`], each
/// catching panics (-1/EIO or NULL) and applying `flavour`'s conventions.
///
/// `before_close` (a `fn(dlm_core::cabi::LsPtr)`) runs before a handle is
/// closed or released: the threads library stops the handle's AST thread
/// there, so the fd is closed only after the thread was joined.
#[macro_export]
macro_rules! c_exports {
    (flavour = $flavour:expr, before_close = $before_close:path $(,)?) => {
        use ::core::ffi::{c_char, c_int, c_uint, c_void};
        use $crate::cabi as __cabi;

        const __FLAVOUR: __cabi::WaitFlavour = $flavour;

        fn __default_handle(open: bool) -> Result<::std::sync::Arc<__cabi::Ls>, $crate::Errno> {
            __cabi::default_ls(open)
        }

        /// Reports the lock manager's device interface version.
        ///
        /// # Safety
        /// Each pointer is NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_kernel_version(
            maj: *mut u32,
            min: *mut u32,
            patch: *mut u32,
        ) -> c_int {
            __cabi::guard(-1, || {
                __cabi::int_ret(__cabi::kernel_version().map(|v| {
                    // SAFETY: each pointer is NULL or writable (caller).
                    unsafe { __cabi::put_version(v, maj, min, patch) }
                }))
            })
        }

        /// Reports the interface version this library speaks (6.0.2).
        ///
        /// # Safety
        /// Each pointer is NULL or writable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_library_version(
            maj: *mut u32,
            min: *mut u32,
            patch: *mut u32,
        ) {
            // SAFETY: each pointer is NULL or writable (caller).
            unsafe { __cabi::put_version(__cabi::library_version(), maj, min, patch) }
        }

        /// Creates (or joins) and opens a lockspace.
        ///
        /// # Safety
        /// `name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_create_lockspace(
            name: *const c_char,
            mode: u32,
        ) -> *mut c_void {
            // SAFETY: forwarded caller contract.
            __cabi::guard(::core::ptr::null_mut(), || {
                __cabi::ptr_ret(unsafe { __cabi::new_lockspace(name, mode, 0) })
            })
        }

        /// Creates (or joins) and opens a lockspace, with `DLM_LSFL_*` flags.
        ///
        /// # Safety
        /// `name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_new_lockspace(
            name: *const c_char,
            mode: u32,
            flags: u32,
        ) -> *mut c_void {
            // SAFETY: forwarded caller contract.
            __cabi::guard(::core::ptr::null_mut(), || {
                __cabi::ptr_ret(unsafe { __cabi::new_lockspace(name, mode, flags) })
            })
        }

        /// Opens an existing lockspace.
        ///
        /// # Safety
        /// `name` is NULL or a NUL-terminated string.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_open_lockspace(name: *const c_char) -> *mut c_void {
            // SAFETY: forwarded caller contract.
            __cabi::guard(::core::ptr::null_mut(), || {
                __cabi::ptr_ret(unsafe { __cabi::open_lockspace(name) })
            })
        }

        /// Closes a handle; its locks are released or orphaned.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle; it is consumed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_close_lockspace(ls: *mut c_void) -> c_int {
            __cabi::guard(-1, || {
                if !ls.is_null() {
                    $before_close(ls);
                }
                // SAFETY: forwarded caller contract.
                __cabi::int_ret(unsafe { __cabi::close_lockspace(ls) })
            })
        }

        /// Closes a handle and releases its lockspace.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle; it is consumed.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_release_lockspace(
            name: *const c_char,
            ls: *mut c_void,
            force: c_int,
        ) -> c_int {
            __cabi::guard(-1, || {
                if !ls.is_null() {
                    $before_close(ls);
                }
                // SAFETY: forwarded caller contract.
                __cabi::int_ret(unsafe { __cabi::release_lockspace(name, ls, force) })
            })
        }

        /// The handle's pollable fd.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_get_fd(ls: *mut c_void) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                match unsafe { __cabi::borrow(ls) } {
                    Ok(ls) => __cabi::ls_get_fd(ls),
                    Err(e) => {
                        __cabi::set_errno(e);
                        -1
                    }
                }
            })
        }

        /// The default lockspace's fd, opening it first.
        #[unsafe(no_mangle)]
        pub extern "C" fn dlm_get_fd() -> c_int {
            __cabi::guard(-1, || match __cabi::get_fd() {
                Ok(fd) => fd,
                Err(e) => {
                    __cabi::set_errno(e);
                    -1
                }
            })
        }

        /// Delivers every queued callback of the handle with this fd.
        #[unsafe(no_mangle)]
        pub extern "C" fn dlm_dispatch(fd: c_int) -> c_int {
            __cabi::guard(-1, || __cabi::int_ret(__cabi::dispatch(fd)))
        }

        /// An asynchronous lock request or conversion.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_lock(
            ls: *mut c_void,
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            astaddr: __cabi::AstFn,
            astarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let mut a = __cabi::LockArgs::new(mode, lksb, flags, name, namelen);
                a.parent = parent;
                a.astaddr = astaddr;
                a.astarg = astarg;
                a.bastaddr = bastaddr;
                // SAFETY: forwarded caller contract.
                let r = unsafe { __cabi::borrow(ls) }
                    .and_then(|ls| unsafe { __cabi::ls_lock(ls, __FLAVOUR, &a, range) });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// An asynchronous lock request or conversion with a transaction
        /// id and a timeout (accepted and ignored, like kernels since 6.4).
        ///
        /// # Safety
        /// libdlm's pointer contract; `xid` and `timeout` NULL or readable.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_lockx(
            ls: *mut c_void,
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            astaddr: __cabi::AstFn,
            astarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            xid: *mut u64,
            timeout: *mut u64,
        ) -> c_int {
            __cabi::guard(-1, || {
                let mut a = __cabi::LockArgs::new(mode, lksb, flags, name, namelen);
                a.parent = parent;
                a.astaddr = astaddr;
                a.astarg = astarg;
                a.bastaddr = bastaddr;
                // SAFETY: NULL or readable (caller).
                unsafe {
                    a.xid = xid.as_ref().copied().unwrap_or(0);
                    a.timeout = timeout.as_ref().copied().unwrap_or(0);
                }
                // SAFETY: forwarded caller contract.
                let r = unsafe { __cabi::borrow(ls) }.and_then(|ls| unsafe {
                    __cabi::ls_lock(ls, __FLAVOUR, &a, ::core::ptr::null())
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// A synchronous lock request or conversion.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_lock_wait(
            ls: *mut c_void,
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            bastarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let mut a = __cabi::LockArgs::new(mode, lksb, flags, name, namelen);
                a.parent = parent;
                a.astarg = bastarg;
                a.bastaddr = bastaddr;
                let r = if range.is_null() {
                    // SAFETY: forwarded caller contract.
                    unsafe { __cabi::borrow(ls) }
                        .and_then(|ls| unsafe { __cabi::ls_lock_wait(ls, __FLAVOUR, &a) })
                } else {
                    Err($crate::Errno::ENOSYS)
                };
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// An asynchronous unlock or cancel.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_unlock(
            ls: *mut c_void,
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
            astarg: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                let r = unsafe { __cabi::borrow(ls) }.and_then(|ls| unsafe {
                    __cabi::ls_unlock(ls, __FLAVOUR, lkid, flags, lksb, astarg)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// A synchronous unlock or cancel.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_unlock_wait(
            ls: *mut c_void,
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                let r = unsafe { __cabi::borrow(ls) }.and_then(|ls| unsafe {
                    __cabi::ls_unlock_wait(ls, __FLAVOUR, lkid, flags, lksb)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// Cancels a request or conversion, reporting EDEADLK.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_deadlock_cancel(
            ls: *mut c_void,
            lkid: u32,
            flags: u32,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                let r = unsafe { __cabi::borrow(ls) }
                    .and_then(|ls| __cabi::deadlock_cancel(ls, lkid, flags));
                __cabi::int_ret(r)
            })
        }

        /// Purges orphan locks.
        ///
        /// # Safety
        /// `ls` is NULL or a live handle.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_ls_purge(ls: *mut c_void, nodeid: c_int, pid: c_int) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                let r = unsafe { __cabi::borrow(ls) }.and_then(|ls| __cabi::purge(ls, nodeid, pid));
                __cabi::int_ret(r)
            })
        }

        /// `dlm_ls_lock` on the default lockspace.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_lock(
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            astaddr: __cabi::AstFn,
            astarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let mut a = __cabi::LockArgs::new(mode, lksb, flags, name, namelen);
                a.parent = parent;
                a.astaddr = astaddr;
                a.astarg = astarg;
                a.bastaddr = bastaddr;
                let r = if range.is_null() {
                    // SAFETY: forwarded caller contract.
                    __default_handle(true)
                        .and_then(|ls| unsafe { __cabi::ls_lock(&ls, __FLAVOUR, &a, range) })
                } else {
                    Err($crate::Errno::ENOSYS)
                };
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// `dlm_ls_lock_wait` on the default lockspace.
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_lock_wait(
            mode: u32,
            lksb: *mut __cabi::Lksb,
            flags: u32,
            name: *const c_void,
            namelen: c_uint,
            parent: u32,
            bastarg: *mut c_void,
            bastaddr: __cabi::AstFn,
            range: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                let mut a = __cabi::LockArgs::new(mode, lksb, flags, name, namelen);
                a.parent = parent;
                a.astarg = bastarg;
                a.bastaddr = bastaddr;
                let r = if range.is_null() {
                    // SAFETY: forwarded caller contract.
                    __default_handle(true)
                        .and_then(|ls| unsafe { __cabi::ls_lock_wait(&ls, __FLAVOUR, &a) })
                } else {
                    Err($crate::Errno::ENOSYS)
                };
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// `dlm_ls_unlock` on the default lockspace (ENOTCONN when it is
        /// not open).
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_unlock(
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
            astarg: *mut c_void,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                let r = __default_handle(false).and_then(|ls| unsafe {
                    __cabi::ls_unlock(&ls, __FLAVOUR, lkid, flags, lksb, astarg)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }

        /// `dlm_ls_unlock_wait` on the default lockspace (ENOTCONN when it
        /// is not open).
        ///
        /// # Safety
        /// libdlm's pointer contract (`dlm_core::cabi`).
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn dlm_unlock_wait(
            lkid: u32,
            flags: u32,
            lksb: *mut __cabi::Lksb,
        ) -> c_int {
            __cabi::guard(-1, || {
                // SAFETY: forwarded caller contract.
                let r = __default_handle(false).and_then(|ls| unsafe {
                    __cabi::ls_unlock_wait(&ls, __FLAVOUR, lkid, flags, lksb)
                });
                __cabi::wait_ret(__FLAVOUR, r)
            })
        }
    };
}
