//! The IPC buffer where the Microkit tool maps it ([`crate::abi::IPC_BUFFER_VADDR`]): message
//! registers at offset 8, 120 words. Indices are checked, so no caller can reach past it.

use crate::abi::{IPC_BUFFER_MSG_OFFSET, IPC_BUFFER_VADDR, MSG_MAX_LENGTH};

#[inline(always)]
fn slot(i: usize) -> *mut u64 {
    (IPC_BUFFER_VADDR as usize + IPC_BUFFER_MSG_OFFSET + i * 8) as *mut u64
}

/// Message register `i`; 0 when `i` is out of range.
#[inline(always)]
pub fn mr(i: usize) -> u64 {
    if i >= MSG_MAX_LENGTH {
        return 0;
    }
    // SAFETY: the Microkit tool maps this PD's IPC buffer read-write at IPC_BUFFER_VADDR before
    // the PD starts; `i < 120` keeps the access inside its message array; the PD is single-threaded.
    unsafe { slot(i).read_volatile() }
}

/// Sets message register `i`; dropped when `i` is out of range.
#[inline(always)]
pub fn set_mr(i: usize, v: u64) {
    if i >= MSG_MAX_LENGTH {
        return;
    }
    // SAFETY: as in `mr`: mapped read-write, index checked, single-threaded PD.
    unsafe { slot(i).write_volatile(v) }
}
