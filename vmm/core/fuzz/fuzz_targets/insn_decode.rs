//! A64 load/store decoding: total on every word, and every accepted instruction is well formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::insn::{InsnError, Offset, Writeback, decode};

fuzz_target!(|data: [u8; 12]| {
    let [w0, w1, w2, w3, v @ ..] = data;
    let word = u32::from_le_bytes([w0, w1, w2, w3]);
    let value = u64::from_le_bytes(v);
    match decode(word) {
        Ok(m) => {
            assert!(matches!(m.size, 1 | 2 | 4 | 8));
            assert!(m.rt < 32 && m.rn < 32 && m.rt2.is_none_or(|r| r < 32));
            assert_eq!(
                u32::from(m.access_len()),
                u32::from(m.size) * if m.rt2.is_some() { 2 } else { 1 }
            );
            if let Offset::Reg { rm, shift, extend } = m.offset {
                assert!(rm < 32 && shift <= 3);
                assert_eq!(m.writeback, Writeback::None);
                let _ = extend.apply(value, shift);
            }
            let loaded = m.load_value(value);
            if !m.signed {
                assert!(loaded <= vmm_core::insn::truncate(value, m.size));
            }
        }
        Err(InsnError::Unsupported(w) | InsnError::Unpredictable(w)) => assert_eq!(w, word),
    }
});
