//! The network virtualiser's decisions on hostile input: a frame's addresses (any bytes, any
//! length) from any client of up to four (addresses chosen by the fuzzer, duplicates included)
//! and any TX descriptor against any region size. Invariants: a frame never goes back to its
//! sender; it goes somewhere only with its sender's source address; a unicast frame goes only
//! to the first client with its destination address; a group frame to all others, or nowhere
//! when there are none; a descriptor's range is a frame's length and lies inside the region.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use net_virt::route::{Drop, MAX_FRAME, MIN_FRAME, Route, route, tx_range};

#[derive(Debug, Arbitrary)]
struct Input {
    frame: Vec<u8>,
    sender: u8,
    macs: Vec<[u8; 6]>,
    offset: u64,
    len: u16,
    region: u32,
}

fuzz_target!(|i: Input| {
    let macs = &i.macs[..i.macs.len().min(4)];
    let sender = usize::from(i.sender % 5);
    let r = route(&i.frame, sender, macs);
    let own = macs.get(sender);
    let header = i.frame.get(..12);
    match r {
        Route::To(j) => {
            assert_ne!(j, sender);
            let h = header.unwrap();
            assert_eq!(own.map(|m| &m[..]), Some(&h[6..12]));
            assert_eq!(h[0] & 1, 0, "unicast only");
            assert_eq!(macs.iter().position(|m| m[..] == h[..6]), Some(j));
        }
        Route::AllOthers => {
            let h = header.unwrap();
            assert_eq!(own.map(|m| &m[..]), Some(&h[6..12]));
            assert_eq!(h[0] & 1, 1);
            assert!(macs.len() > 1);
        }
        Route::Nowhere(Drop::Spoofed) => {
            assert!(header.is_none() || own.is_none_or(|m| m[..] != header.unwrap()[6..12]));
        }
        Route::Nowhere(_) => assert!(own.is_some()),
    }
    let region = i.region as usize;
    if let Some(range) = tx_range(i.offset, i.len, region) {
        assert!((MIN_FRAME..=MAX_FRAME).contains(&range.len()));
        assert_eq!(range.len(), usize::from(i.len));
        assert_eq!(range.start as u64, i.offset);
        assert!(range.end <= region);
    } else {
        let fits = (MIN_FRAME..=MAX_FRAME).contains(&usize::from(i.len))
            && i.offset.checked_add(u64::from(i.len)).is_some_and(|e| e <= region as u64);
        assert!(!fits, "a good descriptor refused");
    }
});
