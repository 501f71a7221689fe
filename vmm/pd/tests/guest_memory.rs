//! Guest RAM as the VMM reaches it (`vmm::guest_memory`), on the regions system.xml maps into
//! the VMM: the small loads and stores (the console runs' and the stage-1 walker's) give the
//! same bytes with the guest's caches on (one volatile access) and off (the maintained copy),
//! little-endian, aligned or not, and refuse what leaves guest RAM.

use microkit_sim::Sim;
use vmm::guest_memory::{RegionMemory, Window};
use vmm::system::guest::{guest_ram, guest_wp_page};
use vmm_core::addr::GuestPhysAddr;
use vmm_core::memory::GuestMemory;

#[test]
fn small_accesses_are_the_bytes_with_and_without_maintenance() {
    let sim = Sim::from_repo_system("vmm");
    let ram = sim.region("guest_ram").expect("vmm maps guest_ram");
    let wp = sim.region("guest_wp_page").expect("vmm maps guest_wp_page");
    let size = ram.size() as u64;
    let mut m = RegionMemory::new(
        Window {
            gpa: guest_ram::GPA,
            region: ram,
        },
        Window {
            gpa: guest_wp_page::GPA,
            region: wp,
        },
    );
    let v = 0x8877_6655_4433_2211u64;
    for coherent in [false, true] {
        m.set_coherent(coherent);
        for (i, (at, len)) in [(0x100, 8), (0x203, 8), (0x302, 4), (0x405, 2), (0x507, 1)]
            .into_iter()
            .enumerate()
        {
            let gpa = GuestPhysAddr(guest_ram::GPA + at + 0x1000 * i as u64);
            m.store_le(gpa, len, v).unwrap();
            let want = if len == 8 {
                v
            } else {
                v & ((1 << (8 * len)) - 1)
            };
            assert_eq!(m.load_le(gpa, len), Ok(want), "{len} bytes at {gpa:?}");
            let mut bytes = [0u8; 8];
            m.read(gpa, &mut bytes[..len as usize]).unwrap();
            assert_eq!(bytes[..len as usize], v.to_le_bytes()[..len as usize]);
            // The byte after the access is untouched.
            assert_eq!(
                m.load_le(GuestPhysAddr(gpa.raw() + u64::from(len)), 1),
                Ok(0)
            );
        }
        let word = GuestPhysAddr(guest_ram::GPA + 0x8000);
        m.store_le(word, 8, v).unwrap();
        assert_eq!(m.read_u64(word), Ok(v));
        assert_eq!(
            m.read_u32(GuestPhysAddr(word.raw() + 4)),
            Ok((v >> 32) as u32)
        );
        // The write-protected page is guest memory too.
        let wp_at = GuestPhysAddr(guest_wp_page::GPA + 8);
        m.store_le(wp_at, 4, 0xdead_beef).unwrap();
        assert_eq!(m.load_le(wp_at, 4), Ok(0xdead_beef));
        // Outside guest memory, across the end of a window (one access is in one window),
        // or longer than 8 bytes: refused.
        let end = GuestPhysAddr(guest_ram::GPA + size);
        assert!(
            m.load_le(GuestPhysAddr(guest_wp_page::GPA + 0x1000), 1)
                .is_err()
        );
        assert!(m.load_le(GuestPhysAddr(u64::MAX - 3), 8).is_err());
        assert!(m.load_le(GuestPhysAddr(end.raw() - 4), 8).is_err());
        assert!(m.store_le(GuestPhysAddr(end.raw() - 1), 2, 0).is_err());
        assert!(m.load_le(GuestPhysAddr(guest_ram::GPA), 9).is_err());
        assert!(m.store_le(GuestPhysAddr(guest_ram::GPA), 16, 0).is_err());
        assert!(m.read_u64(GuestPhysAddr(0)).is_err());
    }
}
