//! dlm's Python ctypes bindings' way of using libdlm_lt
//! (`tests/python/dlm_ctypes.py`): `ctypes.util.find_library("dlm_lt")`
//! with our library directory on `LD_LIBRARY_PATH`, a lock with a
//! blocking callback whose argument is a Python object. The script
//! checks in `/proc/self/maps` that it mapped our library, not Debian's.

use dlm_tests::Dlmd;
use dlm_tests::clib;
use std::process::Command;

#[test]
fn python_ctypes_bindings_lock_with_a_bast() {
    let libdir = clib::lib_dir();
    let dlmd = Dlmd::start("python");
    let script = clib::workspace_root().join("tests/python/dlm_ctypes.py");
    let out = clib::run_ok(
        "dlm_ctypes.py",
        Command::new("python3")
            .arg(script)
            .envs(dlmd.env())
            .env("DLM_TEST_LIBDIR", libdir)
            .env("LD_LIBRARY_PATH", libdir),
    );
    assert_eq!(out, "all ok\n");
}
