//! Passing ring memfds and doorbells between processes over a Unix stream socket
//! (`SCM_RIGHTS`).
//!
//! One hand-over is an 8-byte header — description length and fd count, both `u32`
//! little-endian — then the description (a small caller-defined blob saying what each
//! fd is), with the fds attached to the first byte. The receiver checks that the
//! control data was not truncated (`MSG_CTRUNC`), that no more than [`MAX_FDS`] came,
//! and that the count matches the header; on any error every fd received so far is
//! closed. After an error the stream is out of step: close the connection.
//!
//! The socket itself is the caller's: bind it with a path helper that makes it 0600
//! inside a directory only the service user can enter.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Most fds one hand-over carries.
pub const MAX_FDS: usize = 16;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 4096;

const HEADER_LEN: usize = 8;
const CMSG_SPACE: usize = rustix::cmsg_space!(ScmRights(MAX_FDS));

/// Why a hand-over failed.
#[derive(Debug, thiserror::Error)]
pub enum FdPassError {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The peer closed the connection before a whole hand-over arrived.
    #[error("connection closed during a hand-over")]
    Closed,
    /// The kernel dropped control data that did not fit (`MSG_CTRUNC`).
    #[error("control data truncated: fds were lost")]
    ControlTruncated,
    /// More fds than [`MAX_FDS`].
    #[error("{count} fds in one hand-over, at most {max}")]
    TooManyFds {
        /// Fds offered or announced.
        count: usize,
        /// [`MAX_FDS`].
        max: usize,
    },
    /// The fds that arrived are not as many as the header announced.
    #[error("header announced {announced} fds, {received} arrived")]
    FdCount {
        /// Count in the header.
        announced: usize,
        /// Fds received.
        received: usize,
    },
    /// A description longer than [`MAX_DESCRIPTION`] or than the receiver's buffer.
    #[error("description of {len} bytes, at most {max}")]
    DescriptionTooLong {
        /// Length offered or announced.
        len: usize,
        /// The applicable limit.
        max: usize,
    },
}

fn io(op: &'static str) -> impl FnOnce(Errno) -> FdPassError {
    move |e| FdPassError::Io {
        op,
        source: e.into(),
    }
}

/// Sends `description` and `fds` as one hand-over.
pub fn send_fds(
    socket: impl AsFd,
    description: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), FdPassError> {
    if fds.len() > MAX_FDS {
        return Err(FdPassError::TooManyFds {
            count: fds.len(),
            max: MAX_FDS,
        });
    }
    if description.len() > MAX_DESCRIPTION {
        return Err(FdPassError::DescriptionTooLong {
            len: description.len(),
            max: MAX_DESCRIPTION,
        });
    }
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&(description.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());

    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(FdPassError::TooManyFds {
            count: fds.len(),
            max: MAX_FDS,
        });
    }
    let total = HEADER_LEN + description.len();
    let mut sent = loop {
        let iov = [IoSlice::new(&header), IoSlice::new(description)];
        match rustix::net::sendmsg(&socket, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(n) => break n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io("sendmsg")(e)),
        }
    };
    // The fds went with the first byte; a short write only leaves plain bytes to send.
    while sent < total {
        let rest = if sent < HEADER_LEN {
            &header[sent..]
        } else {
            &description[sent - HEADER_LEN..]
        };
        match rustix::net::send(&socket, rest, SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(io("send")(e)),
        }
    }
    Ok(())
}

/// A received hand-over.
#[derive(Debug)]
pub struct Handover {
    /// Length of the description written to the caller's buffer.
    pub description_len: usize,
    /// The fds, in the order they were sent (close-on-exec).
    pub fds: Vec<OwnedFd>,
}

/// Receives one hand-over, writing its description to the front of `description`.
/// Blocks until it has arrived whole (or the socket's timeout expires).
pub fn recv_fds(socket: impl AsFd, description: &mut [u8]) -> Result<Handover, FdPassError> {
    let mut fds = Vec::new();
    let mut header = [0u8; HEADER_LEN];
    recv_exact(&socket, &mut header, &mut fds)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if count > MAX_FDS {
        return Err(FdPassError::TooManyFds {
            count,
            max: MAX_FDS,
        });
    }
    let max = description.len().min(MAX_DESCRIPTION);
    if len > max {
        return Err(FdPassError::DescriptionTooLong { len, max });
    }
    recv_exact(&socket, &mut description[..len], &mut fds)?;
    if fds.len() != count {
        return Err(FdPassError::FdCount {
            announced: count,
            received: fds.len(),
        });
    }
    Ok(Handover {
        description_len: len,
        fds,
    })
}

/// Fills `buf`, collecting every fd that arrives on the way into `fds`.
fn recv_exact(
    socket: &impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<(), FdPassError> {
    let mut filled = 0;
    while filled < buf.len() {
        let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut buf[filled..])];
        let msg =
            match rustix::net::recvmsg(socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
                Ok(msg) => msg,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io("recvmsg")(e)),
            };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(FdPassError::ControlTruncated);
        }
        // The control buffer is rounded up, so a few more than MAX_FDS can arrive whole.
        if fds.len() > MAX_FDS {
            return Err(FdPassError::TooManyFds {
                count: fds.len(),
                max: MAX_FDS,
            });
        }
        if msg.bytes == 0 {
            return Err(FdPassError::Closed);
        }
        filled += msg.bytes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::ring::{Doorbells, MessageRing};

    /// A memfd whose name no other test uses, to count its open copies.
    fn marker(name: &str) -> OwnedFd {
        rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC).unwrap()
    }

    fn open_copies(name: &str) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|link| link.to_string_lossy().contains(name))
            .count()
    }

    #[test]
    fn memfd_and_doorbells_arrive_with_their_description() {
        let (a, b) = UnixStream::pair().unwrap();
        let ring = MessageRing::create(0x11, 4096, 1024).unwrap();
        let bells = Doorbells::new().unwrap();
        let [data, space] = bells.fds();
        send_fds(&a, b"ring 0x11 + bells", &[ring.fd(), data, space]).unwrap();

        let mut desc = [0u8; 64];
        let got = recv_fds(&b, &mut desc).unwrap();
        assert_eq!(&desc[..got.description_len], b"ring 0x11 + bells");
        let mut fds = got.fds.into_iter();
        let memfd = fds.next().unwrap();
        assert_ne!(memfd.as_raw_fd(), ring.fd().as_raw_fd());
        let flags = rustix::io::fcntl_getfd(&memfd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let attached = MessageRing::attach(memfd, 0x11).unwrap();
        assert_eq!(attached.max_message(), 1024);
        Doorbells::from_fds(fds.next().unwrap(), fds.next().unwrap()).unwrap();
    }

    #[test]
    fn hand_over_without_fds_and_several_in_a_row() {
        let (a, b) = UnixStream::pair().unwrap();
        send_fds(&a, b"first", &[]).unwrap();
        let bell = crate::ring::Doorbell::new().unwrap();
        send_fds(&a, b"", &[bell.fd()]).unwrap();
        let mut desc = [0u8; 8];
        let first = recv_fds(&b, &mut desc).unwrap();
        assert_eq!((first.description_len, first.fds.len()), (5, 0));
        let second = recv_fds(&b, &mut desc).unwrap();
        assert_eq!((second.description_len, second.fds.len()), (0, 1));
    }

    #[test]
    fn too_many_fds_are_refused_by_the_sender() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fds: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| a.as_fd()).collect();
        assert!(matches!(
            send_fds(&a, b"", &fds),
            Err(FdPassError::TooManyFds { count: 17, .. })
        ));
    }

    /// Sends a raw hand-over, bypassing `send_fds`'s checks, as a hostile peer would.
    fn send_raw(socket: &UnixStream, header: [u8; 8], body: &[u8], fds: &[BorrowedFd<'_>]) {
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(64))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        let iov = [IoSlice::new(&header), IoSlice::new(body)];
        rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::empty()).unwrap();
    }

    #[test]
    fn truncated_control_data_is_rejected_and_nothing_leaks() {
        let (a, b) = UnixStream::pair().unwrap();
        let name = "fdpass-marker-ctrunc";
        let m = marker(name);
        let fds: Vec<BorrowedFd<'_>> = (0..40).map(|_| m.as_fd()).collect();
        send_raw(&a, [0, 0, 0, 0, 40, 0, 0, 0], b"", &fds);
        let err = recv_fds(&b, &mut [0u8; 8]).unwrap_err();
        assert!(matches!(err, FdPassError::ControlTruncated), "{err}");
        assert_eq!(open_copies(name), 1, "every received fd was closed");

        // One more than allowed still fits the rounded-up buffer: refused all the same.
        let fds: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| m.as_fd()).collect();
        send_raw(&a, [0, 0, 0, 0, 17, 0, 0, 0], b"", &fds);
        let err = recv_fds(&b, &mut [0u8; 8]).unwrap_err();
        assert!(
            matches!(err, FdPassError::TooManyFds { count: 17, .. }),
            "{err}"
        );
        assert_eq!(open_copies(name), 1);
    }

    #[test]
    fn fd_count_must_match_the_header() {
        let (a, b) = UnixStream::pair().unwrap();
        let name = "fdpass-marker-count";
        let m = marker(name);
        send_raw(&a, [0, 0, 0, 0, 1, 0, 0, 0], b"", &[m.as_fd(), m.as_fd()]);
        assert!(matches!(
            recv_fds(&b, &mut [0u8; 8]),
            Err(FdPassError::FdCount {
                announced: 1,
                received: 2
            })
        ));
        assert_eq!(open_copies(name), 1);
    }

    #[test]
    fn oversized_description_or_count_is_rejected() {
        let (a, b) = UnixStream::pair().unwrap();
        send_raw(&a, [9, 0, 0, 0, 0, 0, 0, 0], b"123456789", &[]);
        assert!(matches!(
            recv_fds(&b, &mut [0u8; 8]),
            Err(FdPassError::DescriptionTooLong { len: 9, max: 8 })
        ));
        let (a, b) = UnixStream::pair().unwrap();
        send_raw(&a, [0, 0, 0, 0, 99, 0, 0, 0], b"", &[]);
        assert!(matches!(
            recv_fds(&b, &mut [0u8; 8]),
            Err(FdPassError::TooManyFds { count: 99, .. })
        ));
    }

    #[test]
    fn closed_peer_is_reported() {
        let (a, b) = UnixStream::pair().unwrap();
        rustix::net::send(&a, &[3, 0, 0, 0, 0, 0, 0, 0, 1], SendFlags::empty()).unwrap();
        drop(a);
        assert!(matches!(
            recv_fds(&b, &mut [0u8; 8]),
            Err(FdPassError::Closed)
        ));
    }
}
