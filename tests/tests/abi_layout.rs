//! The generated `dlm-sys` structs have the layout gcc computes from the
//! kernel's UAPI headers: every size and every field offset.

use core::mem::{offset_of, size_of};
use dlm_sys::*;

/// One (struct, field) list drives both the C program and the Rust side.
macro_rules! layout {
    ($( $ty:ident { $($field:ident),* } )*) => {{
        let mut c = String::new();
        let mut rust = Vec::new();
        $(
            c.push_str(&format!(
                "printf(\"sizeof {0} %zu\\n\", sizeof(struct {0}));\n",
                stringify!($ty)
            ));
            rust.push(format!("sizeof {} {}", stringify!($ty), size_of::<$ty>()));
            $(
                c.push_str(&format!(
                    "printf(\"offsetof {0}.{1} %zu\\n\", offsetof(struct {0}, {1}));\n",
                    stringify!($ty), stringify!($field)
                ));
                rust.push(format!(
                    "offsetof {}.{} {}",
                    stringify!($ty), stringify!($field), offset_of!($ty, $field)
                ));
            )*
        )*
        (c, rust)
    }};
}

#[test]
fn struct_layout_matches_gcc() {
    let (c_body, rust) = layout! {
        dlm_lksb { sb_status, sb_lkid, sb_flags, sb_lvbptr }
        dlm_lock_params {
            mode, namelen, unused, flags, lkid, parent, xid, timeout,
            castparam, castaddr, bastparam, bastaddr, lksb, lvb, name
        }
        dlm_lspace_params { flags, minor, name }
        dlm_purge_params { nodeid, pid }
        dlm_write_request { version, cmd, is64bit, unused, i }
        dlm_device_version { version }
        dlm_lock_result {
            version, length, user_astaddr, user_astparam, user_lksb, lksb,
            bast_mode, unused, lvb_offset
        }
    };
    let source = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/dlm_device.h>\n\
         int main(void) {{\n{c_body}return 0;\n}}\n"
    );
    let c_lines: Vec<String> = dlm_tests::run_c("abi_layout", &source)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(c_lines, rust);

    // The facts the codec relies on (x86_64).
    assert_eq!(size_of::<dlm_write_request>(), 120);
    assert_eq!(
        offset_of!(dlm_write_request, i) + offset_of!(dlm_lock_params, name),
        120
    );
    assert_eq!(size_of::<dlm_lock_result>(), 72);
    assert_eq!(size_of::<dlm_lksb>(), 24);
}

#[test]
fn constants_match_gcc() {
    macro_rules! consts {
        ($($name:ident),*) => {{
            let c: String = [$(format!(
                "printf(\"{0} %lld\\n\", (long long)({0}));\n", stringify!($name)
            )),*].concat();
            let rust: Vec<String> = vec![$(format!("{} {}", stringify!($name), $name as i64)),*];
            (c, rust)
        }};
    }
    let (c_body, rust) = consts!(
        DLM_LOCKSPACE_LEN,
        DLM_RESNAME_MAXLEN,
        DLM_LOCK_IV,
        DLM_LOCK_NL,
        DLM_LOCK_CR,
        DLM_LOCK_CW,
        DLM_LOCK_PR,
        DLM_LOCK_PW,
        DLM_LOCK_EX,
        DLM_LKF_NOQUEUE,
        DLM_LKF_CANCEL,
        DLM_LKF_CONVERT,
        DLM_LKF_VALBLK,
        DLM_LKF_QUECVT,
        DLM_LKF_IVVALBLK,
        DLM_LKF_CONVDEADLK,
        DLM_LKF_PERSISTENT,
        DLM_LKF_NODLCKWT,
        DLM_LKF_NODLCKBLK,
        DLM_LKF_EXPEDITE,
        DLM_LKF_NOQUEUEBAST,
        DLM_LKF_HEADQUE,
        DLM_LKF_NOORDER,
        DLM_LKF_ORPHAN,
        DLM_LKF_ALTPR,
        DLM_LKF_ALTCW,
        DLM_LKF_FORCEUNLOCK,
        DLM_LKF_TIMEOUT,
        DLM_ECANCEL,
        DLM_EUNLOCK,
        DLM_SBF_DEMOTED,
        DLM_SBF_VALNOTVALID,
        DLM_SBF_ALTMODE,
        DLM_LSFL_TIMEWARN,
        DLM_LSFL_NEWEXCL,
        DLM_USER_LVB_LEN,
        DLM_DEVICE_VERSION_MAJOR,
        DLM_DEVICE_VERSION_MINOR,
        DLM_DEVICE_VERSION_PATCH,
        DLM_USER_LOCK,
        DLM_USER_UNLOCK,
        DLM_USER_QUERY,
        DLM_USER_CREATE_LOCKSPACE,
        DLM_USER_REMOVE_LOCKSPACE,
        DLM_USER_PURGE,
        DLM_USER_DEADLOCK,
        DLM_USER_LSFLG_AUTOFREE,
        DLM_USER_LSFLG_FORCEFREE
    );
    let source = format!(
        "#include <stdio.h>\n#include <linux/dlm_device.h>\n\
         int main(void) {{\n{c_body}return 0;\n}}\n"
    );
    let c_lines: Vec<String> = dlm_tests::run_c("abi_constants", &source)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(c_lines, rust);
}
