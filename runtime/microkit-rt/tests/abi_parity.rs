//! ABI parity: the runtime's numbers against an SDK's own generated files, for every
//! configuration the SDK has for the board: invocation labels (`invocations_all.json`), syscall
//! numbers (`sel4/syscall.h`), fault labels (`sel4/sel4_arch/types_gen.h`), error codes
//! (`sel4/errors.h`), the `seL4_UserContext` order (`interfaces/object-api-sel4-arch.xml`), the
//! `seL4_VCPUReg` numbering (`sel4/sel4_arch/constants.h`) and the IPC buffer address
//! (`address_space_constants.json`). It needs an SDK, so plain `cargo test` lists it as ignored;
//! `make abi-parity` (part of `make test`) runs it with `MICROKIT_SDK`, and it fails without one.

use microkit_rt::abi::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn sdk_board() -> Option<PathBuf> {
    let sdk = std::env::var_os("MICROKIT_SDK").filter(|s| !s.is_empty())?;
    let board = std::env::var("MICROKIT_BOARD").unwrap_or_else(|_| "qemu_virt_aarch64".into());
    Some(Path::new(&sdk).join("board").join(board))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `NAME = VALUE` enumerators of a C header, in order, with aliases resolved.
fn c_enum(text: &str, prefix: &str) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = vec![];
    let mut next = 0i64;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let code = code.split("/*").next().unwrap_or("");
        let l = code.trim().trim_end_matches(',').trim();
        let Some(rest) = l.strip_prefix(prefix) else {
            continue;
        };
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = format!("{prefix}{}", &rest[..name_end]);
        let tail = rest[name_end..].trim();
        let value = if let Some(v) = tail.strip_prefix('=') {
            let v = v.trim();
            match v.parse::<i64>() {
                Ok(n) => n,
                Err(_) => match out.iter().find(|(n, _)| n == v) {
                    Some((_, val)) => *val,
                    None => continue, // an expression we do not model (not an enumerator line)
                },
            }
        } else if tail.is_empty() {
            next
        } else {
            continue;
        };
        out.push((name, value));
        next = value + 1;
    }
    out
}

fn lookup(list: &[(String, i64)], name: &str) -> Option<i64> {
    list.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

fn check_config(dir: &Path, config: KernelConfig) {
    let what = config.name();
    // Invocation labels.
    let json: BTreeMap<String, i64> =
        serde_json::from_str(&read(&dir.join("invocations_all.json")))
            .expect("invocations_all.json");
    for (name, label) in config.labels().named() {
        assert_eq!(
            json.get(name).copied(),
            Some(label as i64),
            "{what}: label of {name}"
        );
    }
    // Syscall numbers.
    let sys = c_enum(&read(&dir.join("include/sel4/syscall.h")), "seL4_Sys");
    for (name, num) in [
        ("seL4_SysCall", syscall::CALL),
        ("seL4_SysReplyRecv", syscall::REPLY_RECV),
        ("seL4_SysNBSendRecv", syscall::NB_SEND_RECV),
        ("seL4_SysNBSendWait", syscall::NB_SEND_WAIT),
        ("seL4_SysSend", syscall::SEND),
        ("seL4_SysNBSend", syscall::NB_SEND),
        ("seL4_SysRecv", syscall::RECV),
        ("seL4_SysNBRecv", syscall::NB_RECV),
        ("seL4_SysWait", syscall::WAIT),
        ("seL4_SysNBWait", syscall::NB_WAIT),
        ("seL4_SysYield", syscall::YIELD),
    ] {
        assert_eq!(lookup(&sys, name), Some(num), "{what}: syscall {name}");
    }
    // DebugPutChar exists only in a kernel with CONFIG_PRINTING (the header guards it by #if).
    let kconfig: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(&read(&dir.join("include/kernel/gen_config.json")))
            .expect("gen_config.json");
    let printing = kconfig
        .get("PRINTING")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    assert_eq!(
        printing,
        config.has_debug_putchar(),
        "{what}: kernel printing (DebugPutChar) presence"
    );
    assert_eq!(
        lookup(&sys, "seL4_SysDebugPutChar"),
        Some(syscall::DEBUG_PUT_CHAR),
        "{what}: DebugPutChar number"
    );
    // Fault labels.
    let faults = c_enum(
        &read(&dir.join("include/sel4/sel4_arch/types_gen.h")),
        "seL4_Fault_",
    );
    for (name, label) in [
        ("seL4_Fault_NullFault", fault_label::NULL),
        ("seL4_Fault_CapFault", fault_label::CAP_FAULT),
        ("seL4_Fault_UnknownSyscall", fault_label::UNKNOWN_SYSCALL),
        ("seL4_Fault_UserException", fault_label::USER_EXCEPTION),
        ("seL4_Fault_Timeout", fault_label::TIMEOUT),
        ("seL4_Fault_VMFault", fault_label::VM_FAULT),
        ("seL4_Fault_VGICMaintenance", fault_label::VGIC_MAINTENANCE),
        ("seL4_Fault_VCPUFault", fault_label::VCPU_FAULT),
        ("seL4_Fault_VPPIEvent", fault_label::VPPI_EVENT),
    ] {
        assert_eq!(
            lookup(&faults, name),
            Some(label as i64),
            "{what}: fault label {name}"
        );
    }
    // Error codes.
    let errors = c_enum(&read(&dir.join("include/sel4/errors.h")), "seL4_");
    for (name, code) in [
        ("seL4_NoError", error::NO_ERROR),
        ("seL4_InvalidArgument", error::INVALID_ARGUMENT),
        ("seL4_InvalidCapability", error::INVALID_CAPABILITY),
        ("seL4_IllegalOperation", error::ILLEGAL_OPERATION),
        ("seL4_RangeError", error::RANGE_ERROR),
        ("seL4_AlignmentError", error::ALIGNMENT_ERROR),
        ("seL4_FailedLookup", error::FAILED_LOOKUP),
        ("seL4_TruncatedMessage", error::TRUNCATED_MESSAGE),
        ("seL4_DeleteFirst", error::DELETE_FIRST),
        ("seL4_RevokeFirst", error::REVOKE_FIRST),
        ("seL4_NotEnoughMemory", error::NOT_ENOUGH_MEMORY),
    ] {
        assert_eq!(
            lookup(&errors, name),
            Some(code as i64),
            "{what}: error {name}"
        );
    }
    // seL4_UserContext member order.
    let xml = read(&dir.join("include/interfaces/object-api-sel4-arch.xml"));
    let start = xml
        .find("<struct name=\"seL4_UserContext\">")
        .expect("seL4_UserContext struct");
    let end = start + xml[start..].find("</struct>").expect("end of struct");
    let members: Vec<&str> = xml[start..end]
        .split("<member name=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(
        members,
        user_context::NAMES.to_vec(),
        "{what}: seL4_UserContext order"
    );
    // seL4_VCPUReg numbering.
    let vcpu = c_enum(
        &read(&dir.join("include/sel4/sel4_arch/constants.h")),
        "seL4_VCPUReg",
    );
    for (i, name) in vcpu_reg::NAMES.iter().enumerate() {
        assert_eq!(
            lookup(&vcpu, &format!("seL4_VCPUReg_{name}")),
            Some(i as i64),
            "{what}: seL4_VCPUReg_{name}"
        );
    }
    assert_eq!(
        lookup(&vcpu, "seL4_VCPUReg_Num"),
        Some(vcpu_reg::NUM as i64),
        "{what}: seL4_VCPUReg_Num"
    );
    // The IPC buffer: the page below the top of user space.
    let consts: BTreeMap<String, u64> =
        serde_json::from_str(&read(&dir.join("address_space_constants.json")))
            .expect("address_space_constants.json");
    let top = consts["vspace_user_top"];
    assert_eq!(
        (top + 1) - 0x1000,
        IPC_BUFFER_VADDR,
        "{what}: IPC buffer address"
    );
}

#[test]
#[ignore = "needs a Microkit SDK: run `make abi-parity`"]
fn runtime_abi_matches_the_sdk() {
    let board = sdk_board().expect(
        "MICROKIT_SDK is not set: ABI parity needs a Microkit SDK (`make setup` unpacks one)",
    );
    let mut checked = 0;
    for config in [KernelConfig::Debug, KernelConfig::Release] {
        let dir = board.join(config.name());
        if dir.is_dir() {
            check_config(&dir, config);
            checked += 1;
            println!("ABI parity: {} matches {}", config.name(), dir.display());
        }
    }
    assert!(
        checked > 0,
        "MICROKIT_SDK is set but {} has no debug or release configuration",
        board.display()
    );
}

#[test]
fn enum_parser_resolves_aliases() {
    let text = "A_X = 0,\nA_Y, /* c */\nA_R = A_Y, // c\nA_Z,\nA_End = A_Z,\nA_W,";
    let e = c_enum(text, "A_");
    assert_eq!(lookup(&e, "A_Z"), Some(2));
    assert_eq!(lookup(&e, "A_W"), Some(3));
}
