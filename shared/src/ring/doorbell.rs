//! eventfd doorbells that let an idle ring endpoint sleep.
//!
//! A ring has two: `data` (rung by the producer, waited on by the consumer) and `space`
//! (rung by the consumer, waited on by the producer). The data plane polls them from
//! io_uring, the control process from tokio; both go through the same protocol:
//!
//! 1. the sleeper sets its flag in the ring's waiter line, then re-checks the peer's
//!    index (`prepare_sleep`); if there is work after all it clears the flag and does
//!    not sleep;
//! 2. it waits for the doorbell fd to become readable, then calls `finish_sleep`;
//! 3. after publishing, the peer reads the flag and rings only if it is set, clearing it
//!    so that a burst of publishes costs one `write`.
//!
//! A `SeqCst` fence between "store my index / flag" and "load the other" on both sides
//! guarantees that at least one side sees the other's store, so a wake-up is never lost.
//! Endpoints without doorbells never fence and never touch the flags: the hot path stays
//! free of system calls either way.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::io::Errno;

use super::error::SetupError;

/// Spins on the peer's index before sleeping: a peer that is busy will publish soon,
/// and two system calls cost more than a short spin.
pub(crate) const SPIN_BEFORE_SLEEP: u32 = 64;

/// One eventfd.
#[derive(Debug)]
pub struct Doorbell {
    fd: OwnedFd,
}

impl Doorbell {
    /// A fresh, non-blocking, close-on-exec eventfd.
    pub fn new() -> Result<Self, SetupError> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(SetupError::io("eventfd"))?;
        Ok(Self { fd })
    }

    /// Wraps an fd received from the peer after checking that it is an eventfd, and
    /// makes it non-blocking.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SetupError> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|_| SetupError::NotEventfd)?;
        if link.as_os_str() != "anon_inode:[eventfd]" {
            return Err(SetupError::NotEventfd);
        }
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(SetupError::io("fcntl F_GETFL"))?;
        rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)
            .map_err(SetupError::io("fcntl F_SETFL"))?;
        Ok(Self { fd })
    }

    /// A second handle on the same eventfd.
    pub fn try_clone(&self) -> Result<Self, SetupError> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0).map_err(SetupError::io("dup"))?;
        Ok(Self { fd })
    }

    /// The eventfd, to pass to the peer or to register with a poller.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Wakes whoever waits on this doorbell.
    pub fn ring(&self) -> Result<(), Errno> {
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            // The counter is saturated: the sleeper has plenty of wake-ups pending.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the doorbell; returns whether it had been rung.
    pub fn drain(&self) -> Result<bool, Errno> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(_) => Ok(true),
            Err(Errno::AGAIN) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Blocks until the doorbell is rung or `timeout` passes; returns whether it was
    /// rung. Does not reset it (see [`Doorbell::drain`]).
    pub fn wait(&self, timeout: Duration) -> Result<bool, Errno> {
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The two doorbells of one ring; each endpoint holds a handle on both.
#[derive(Debug)]
pub struct Doorbells {
    /// Rung by the producer after publishing, waited on by the consumer.
    pub data: Doorbell,
    /// Rung by the consumer after releasing slots, waited on by the producer.
    pub space: Doorbell,
}

impl Doorbells {
    /// Two fresh eventfds.
    pub fn new() -> Result<Self, SetupError> {
        Ok(Self {
            data: Doorbell::new()?,
            space: Doorbell::new()?,
        })
    }

    /// Second handles on both, for the other endpoint.
    pub fn try_clone(&self) -> Result<Self, SetupError> {
        Ok(Self {
            data: self.data.try_clone()?,
            space: self.space.try_clone()?,
        })
    }

    /// Both fds, data first, for [`super::fdpass::send_fds`].
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.data.fd(), self.space.fd()]
    }

    /// Wraps fds received from the peer, data first.
    pub fn from_fds(data: OwnedFd, space: OwnedFd) -> Result<Self, SetupError> {
        Ok(Self {
            data: Doorbell::from_fd(data)?,
            space: Doorbell::from_fd(space)?,
        })
    }
}

/// Step 1 of the protocol: the caller re-checks the peer's index right after this.
pub(crate) fn announce_sleep(flag: &AtomicU32) {
    flag.store(1, Ordering::Relaxed);
    fence(Ordering::SeqCst);
}

/// Clears the caller's own flag (work arrived, or it woke up).
pub(crate) fn cancel_sleep(flag: &AtomicU32) {
    flag.store(0, Ordering::Relaxed);
}

/// Step 3: called after publishing an index; rings `bell` if the peer sleeps. Returns
/// whether it rang.
pub(crate) fn wake_peer(flag: &AtomicU32, bell: &Doorbell) -> bool {
    fence(Ordering::SeqCst);
    if flag.load(Ordering::Relaxed) == 0 || flag.swap(0, Ordering::AcqRel) == 0 {
        return false;
    }
    // A failed write leaves the sleeper to its timeout; nothing better can be done here.
    let _ = bell.ring();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rung_doorbell_wakes_a_waiter_and_drains_once() {
        let bell = Doorbell::new().unwrap();
        assert!(!bell.wait(Duration::from_millis(1)).unwrap());
        let other = bell.try_clone().unwrap();
        other.ring().unwrap();
        other.ring().unwrap();
        assert!(bell.wait(Duration::from_secs(5)).unwrap());
        assert!(bell.drain().unwrap());
        assert!(!bell.drain().unwrap());
    }

    #[test]
    fn a_waiter_is_woken_from_another_thread() {
        let bell = Doorbell::new().unwrap();
        let other = bell.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.ring().unwrap();
        });
        assert!(bell.wait(Duration::from_secs(10)).unwrap());
        t.join().unwrap();
    }

    #[test]
    fn wake_peer_rings_only_when_the_flag_is_set() {
        let bell = Doorbell::new().unwrap();
        let flag = AtomicU32::new(0);
        assert!(!wake_peer(&flag, &bell));
        assert!(!bell.drain().unwrap());
        announce_sleep(&flag);
        assert!(wake_peer(&flag, &bell));
        // The flag is consumed: a second publish does not ring again.
        assert!(!wake_peer(&flag, &bell));
        assert!(bell.drain().unwrap());
    }

    #[test]
    fn only_eventfds_are_accepted_as_doorbells() {
        let memfd =
            rustix::fs::memfd_create("not-a-bell", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        assert!(matches!(
            Doorbell::from_fd(memfd),
            Err(SetupError::NotEventfd)
        ));
        let bell = Doorbell::new().unwrap();
        let fd = rustix::io::dup(bell.fd()).unwrap();
        Doorbell::from_fd(fd).unwrap();
    }
}
