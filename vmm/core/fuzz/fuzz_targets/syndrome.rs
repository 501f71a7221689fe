//! ESR decoding: total on every 64-bit value; encoding a decoded syndrome keeps the class and
//! decodes back to the same syndrome.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::syndrome::{Class, Syndrome};

fuzz_target!(|data: [u8; 8]| {
    let esr = u64::from_le_bytes(data);
    let s = Syndrome::decode(esr);
    let again = s.encode();
    assert_eq!(Syndrome::decode(again), s);
    assert_eq!(again >> 26 & 0x3f, esr >> 26 & 0x3f);
    assert_eq!(again & !esr, 0, "encode invents bits");
    assert_eq!(
        Syndrome::decode32(esr as u32),
        Syndrome::decode(esr & 0xffff_ffff)
    );
    match s.class {
        Class::DataAbort(d) => {
            let _ = (d.access_size(), d.fault_status());
        }
        Class::InstructionAbort(i) => {
            let _ = i.fault_status();
        }
        Class::SysReg(r) => {
            let _ = r.key();
        }
        _ => {}
    }
});
