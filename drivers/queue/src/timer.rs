//! sDDF's timer protocol (`include/sddf/timer/protocol.h`, `client.h`): no shared memory, only
//! protected procedure calls to the timer driver and its notifications back.
//!
//! - Label [`GET_TIME`]: the reply's MR0 is the time since boot in nanoseconds.
//! - Label [`SET_TIMEOUT`], MR0 = a timeout in nanoseconds **relative** to now: the driver
//!   notifies the caller's channel once that time has passed. One timeout per client: a new one
//!   replaces the one pending.
//!
//! And the conversions between the ARM generic timer's counts and nanoseconds both sides use,
//! in 128-bit arithmetic (no overflow before the result is saturated). A client that turns a
//! deadline in counts into a relative timeout rounds up ([`ticks_to_ns_ceil`]) and the driver
//! rounds its deadline up too ([`ns_to_ticks_ceil`]), so a notification never comes before
//! the client's deadline as long as both read the same counter.

/// Protected call label: the current time in ns (MR0 of the reply).
pub const GET_TIME: u64 = 0;
/// Protected call label: notify me `MR0` ns from now.
pub const SET_TIMEOUT: u64 = 1;

/// Nanoseconds in a second.
pub const NS_PER_S: u128 = 1_000_000_000;

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// `ticks` of a counter at `hz` in nanoseconds, rounded down (sDDF's GET_TIME); a frequency of
/// 0 (a counter nobody set up) is taken as 1 Hz rather than dividing by zero.
pub fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    saturate(ticks as u128 * NS_PER_S / hz.max(1) as u128)
}

/// `ticks` in nanoseconds, rounded up (a client's relative timeout: never early).
pub fn ticks_to_ns_ceil(ticks: u64, hz: u64) -> u64 {
    saturate((ticks as u128 * NS_PER_S).div_ceil(hz.max(1) as u128))
}

/// `ns` nanoseconds in ticks of a counter at `hz`, rounded up (a deadline: never early).
pub fn ns_to_ticks_ceil(ns: u64, hz: u64) -> u64 {
    saturate((ns as u128 * hz as u128).div_ceil(NS_PER_S))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: u64 = 62_500_000;

    #[test]
    fn qemu_virt_counts_are_16_ns() {
        assert_eq!(ticks_to_ns(1, QEMU), 16);
        assert_eq!(ticks_to_ns(62_500_000, QEMU), 1_000_000_000);
        assert_eq!(ns_to_ticks_ceil(16, QEMU), 1);
        assert_eq!(ns_to_ticks_ceil(17, QEMU), 2);
        assert_eq!(ns_to_ticks_ceil(0, QEMU), 0);
        assert_eq!(ticks_to_ns_ceil(3, 3_000_000_000), 1);
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(ns_to_ticks_ceil(u64::MAX, 2 * 1_000_000_000), u64::MAX);
        assert_eq!(ticks_to_ns(u64::MAX, QEMU), u64::MAX);
        assert_eq!(ticks_to_ns_ceil(u64::MAX, 0), u64::MAX);
        assert_eq!(ticks_to_ns(5, 0), 5_000_000_000);
    }

    #[test]
    fn a_rounded_up_round_trip_is_never_early() {
        for hz in [1, 7, 1_000, QEMU, 19_200_000, 1_000_000_000, 3_000_000_000] {
            for t in [0, 1, 2, 3, 15, 16, 17, 1_000_003, u32::MAX as u64] {
                assert!(
                    ns_to_ticks_ceil(ticks_to_ns_ceil(t, hz), hz) >= t,
                    "{t} at {hz}"
                );
            }
        }
    }
}
