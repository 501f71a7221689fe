//! Raw seL4 system calls for the MCS kernel on AArch64: `svc #0` with the number in x7, the
//! capability in x0, the message info in x1, message registers 0..3 in x2..x5, the reply object
//! in x6 and, for NBSendRecv, the destination in x8. Message registers 0..3 are moved between the
//! CPU registers and the IPC buffer here, so callers always find them in the IPC buffer.

use super::ipc_buffer;
use crate::abi::{MessageInfo, syscall};

/// Result of a receive-shaped call: the badge and the message info.
pub type Received = (u64, MessageInfo);

#[inline(always)]
fn load_mrs() -> [u64; 4] {
    [
        ipc_buffer::mr(0),
        ipc_buffer::mr(1),
        ipc_buffer::mr(2),
        ipc_buffer::mr(3),
    ]
}

#[inline(always)]
fn store_mrs(m: [u64; 4]) {
    for (i, v) in m.into_iter().enumerate() {
        ipc_buffer::set_mr(i, v);
    }
}

/// One syscall with every register in and out.
#[inline(always)]
fn raw(num: i64, cap: u64, info: u64, reply: u64, dest: u64) -> Received {
    let [mut m0, mut m1, mut m2, mut m3] = load_mrs();
    let mut x0 = cap;
    let mut x1 = info;
    // SAFETY: `svc #0` enters the seL4 kernel with the MCS calling convention; the kernel reads
    // x0..x8 and writes back x0..x5 (clobbered as declared), and may write the IPC buffer, which
    // the asm block may touch as memory (no `nomem`). No Rust invariant depends on other registers.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inout("x0") x0,
            inout("x1") x1,
            inout("x2") m0,
            inout("x3") m1,
            inout("x4") m2,
            inout("x5") m3,
            in("x6") reply,
            in("x7") num,
            in("x8") dest,
            options(nostack),
        );
    }
    store_mrs([m0, m1, m2, m3]);
    (x0, MessageInfo::from_word(x1))
}

/// `seL4_Send`.
pub fn send(dest: u64, info: MessageInfo) {
    raw(syscall::SEND, dest, info.word(), 0, 0);
}

/// `seL4_NBSend`.
pub fn nb_send(dest: u64, info: MessageInfo) {
    raw(syscall::NB_SEND, dest, info.word(), 0, 0);
}

/// `seL4_Signal`: a Send with an empty message to a notification.
pub fn signal(dest: u64) {
    raw(syscall::SEND, dest, MessageInfo::new(0, 0).word(), 0, 0);
}

/// `seL4_Call`: returns the reply's info (its label is the error code for kernel invocations).
pub fn call(dest: u64, info: MessageInfo) -> MessageInfo {
    raw(syscall::CALL, dest, info.word(), 0, 0).1
}

/// `seL4_Recv` with a reply object.
pub fn recv(src: u64, reply: u64) -> Received {
    raw(syscall::RECV, src, 0, reply, 0)
}

/// `seL4_NBRecv` with a reply object.
pub fn nb_recv(src: u64, reply: u64) -> Received {
    raw(syscall::NB_RECV, src, 0, reply, 0)
}

/// `seL4_ReplyRecv`.
pub fn reply_recv(src: u64, info: MessageInfo, reply: u64) -> Received {
    raw(syscall::REPLY_RECV, src, info.word(), reply, 0)
}

/// `seL4_NBSendRecv`: non-blocking send to `dest`, then receive on `src`.
pub fn nb_send_recv(dest: u64, info: MessageInfo, src: u64, reply: u64) -> Received {
    raw(syscall::NB_SEND_RECV, src, info.word(), reply, dest)
}

/// `seL4_Wait` on a notification or endpoint (no reply object); returns the badge.
pub fn wait(src: u64) -> u64 {
    raw(syscall::WAIT, src, 0, 0, 0).0
}

/// `seL4_Yield`.
pub fn yield_now() {
    raw(syscall::YIELD, 0, 0, 0, 0);
}

/// `seL4_DebugPutChar` (debug kernel only: on the release kernel it is an unknown syscall, so
/// callers check [`crate::abi::KernelConfig::has_debug_putchar`] first).
pub fn debug_put_char(c: u8) {
    let x0 = c as u64;
    // SAFETY: the DebugPutChar syscall reads x0 and x7 and returns without touching memory the
    // program owns; x0..x5 are declared clobbered in case the kernel writes them back.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inout("x0") x0 => _,
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _,
            in("x7") syscall::DEBUG_PUT_CHAR,
            options(nostack),
        );
    }
}
