//! Fault intake: any label and message words decode to a fault or a typed error, never a panic;
//! a decoded fault re-encodes to exactly the words it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm_core::fault::{Fault, FaultError};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // Mostly small labels (the real ones), sometimes a full 64-bit label from the next 8 bytes.
    let (label, rest) = if first & 0x80 == 0 {
        (u64::from(first & 0x0f), rest)
    } else if let Some((l, r)) = rest.split_first_chunk::<8>() {
        (u64::from_le_bytes(*l), r)
    } else {
        return;
    };
    let mut words = [0u64; 16];
    let mut n = 0;
    for (w, chunk) in words.iter_mut().zip(rest.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
        n += 1;
    }
    let words = &words[..n];
    match Fault::decode(label, words) {
        Ok(f) => {
            let e = f.encode();
            assert_eq!(e.label, label);
            assert_eq!(e.words(), &words[..e.words().len()]);
            assert_eq!(Fault::decode(e.label, e.words()), Ok(f));
        }
        Err(FaultError::ShortMessage { got, need, .. }) => assert!(got == n && got < need),
        Err(FaultError::BadValue { index, value, .. }) => assert_eq!(words[index], value),
        Err(FaultError::UnknownLabel(_) | FaultError::UnexpectedKind(_)) => {}
    }
});
