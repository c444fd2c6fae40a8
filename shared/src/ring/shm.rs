//! A sealed `memfd` mapped `MAP_SHARED`: the memory under every ring.
//!
//! The creator sizes the memfd and seals it against shrinking and growing before anyone
//! else sees it, so the peer can never truncate the file under a live mapping (a read
//! past the end of a truncated file raises `SIGBUS`). The attaching side checks the
//! seals first, then the size, and only then maps it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::error::SetupError;

/// Seals every ring memfd carries: size fixed, seal set fixed.
const REQUIRED_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// A sealed memfd and its shared mapping; unmapped on drop.
#[derive(Debug)]
pub struct SharedRegion {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain shared memory; concurrent access is arbitrated by the ring
// protocol built on top (atomics for indices, ownership of slots by index ranges).
unsafe impl Send for SharedRegion {}

impl SharedRegion {
    /// Creates a zero-filled memfd of `len` bytes named `name` (shown in
    /// `/proc/<pid>/fd`), seals its size and maps it.
    pub fn create(name: &str, len: usize) -> Result<Self, SetupError> {
        if len == 0 {
            return Err(SetupError::Size {
                found: 0,
                expected: 1,
            });
        }
        let fd = create_memfd(name)?;
        rustix::fs::ftruncate(&fd, len as u64).map_err(SetupError::io("ftruncate memfd"))?;
        rustix::fs::fcntl_add_seals(&fd, REQUIRED_SEALS).map_err(SetupError::io("seal memfd"))?;
        Self::map(fd, len)
    }

    /// Maps a memfd received from the peer after checking its seals and that it holds at
    /// least `min_len` bytes. The whole file is mapped.
    pub fn attach(fd: OwnedFd, min_len: usize) -> Result<Self, SetupError> {
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(SetupError::io("read seals"))?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(SetupError::NotSealed {
                found: seals.bits(),
            });
        }
        // Only now is the size stable.
        let size = rustix::fs::fstat(&fd)
            .map_err(SetupError::io("fstat memfd"))?
            .st_size;
        let size = u64::try_from(size).unwrap_or(0);
        let len = usize::try_from(size).map_err(|_| SetupError::Size {
            found: size,
            expected: min_len as u64,
        })?;
        if len < min_len || len == 0 {
            return Err(SetupError::Size {
                found: size,
                expected: min_len.max(1) as u64,
            });
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self, SetupError> {
        // SAFETY: a fresh mapping at an address of the kernel's choosing aliases nothing
        // in this process; POPULATE faults the pages in now rather than on the hot path.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::POPULATE,
                &fd,
                0,
            )
        }
        .map_err(SetupError::io("mmap memfd"))?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(SetupError::Io {
            op: "mmap memfd",
            source: std::io::Error::other("null mapping"),
        })?;
        Ok(Self { fd, ptr, len })
    }

    /// The memfd, to hand to the peer.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Start of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true for a mapped region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this length and every pointer
        // into it is tied to the lifetime of this region.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn create_memfd(name: &str) -> Result<OwnedFd, SetupError> {
    // NOEXEC_SEAL (Linux 6.3+) also satisfies `vm.memfd_noexec = 2`; older kernels reject
    // the flag with EINVAL, so retry without it.
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    match rustix::fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL) {
        Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create(name, flags),
        r => r,
    }
    .map_err(SetupError::io("memfd_create"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_region_is_sealed_and_shared_with_an_attached_mapping() {
        let a = SharedRegion::create("test-region", 8192).unwrap();
        let seals = rustix::fs::fcntl_get_seals(a.fd()).unwrap();
        assert!(seals.contains(REQUIRED_SEALS));
        assert_eq!(
            rustix::fs::ftruncate(a.fd(), 4096),
            Err(rustix::io::Errno::PERM)
        );
        let b = SharedRegion::attach(rustix::io::dup(a.fd()).unwrap(), 8192).unwrap();
        assert_eq!(b.len(), 8192);
        // SAFETY: both mappings are 8192 bytes long; single-threaded test.
        unsafe {
            a.as_ptr().add(5000).write_volatile(0xA5);
            assert_eq!(b.as_ptr().add(5000).read_volatile(), 0xA5);
        }
    }

    #[test]
    fn unsealed_memfd_is_refused() {
        let fd = rustix::fs::memfd_create("unsealed", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        assert!(matches!(
            SharedRegion::attach(fd, 4096),
            Err(SetupError::NotSealed { .. })
        ));
    }

    #[test]
    fn memfd_smaller_than_needed_is_refused() {
        let a = SharedRegion::create("small", 4096).unwrap();
        let fd = rustix::io::dup(a.fd()).unwrap();
        assert!(matches!(
            SharedRegion::attach(fd, 8192),
            Err(SetupError::Size {
                found: 4096,
                expected: 8192
            })
        ));
    }

    #[test]
    fn a_plain_file_is_refused() {
        let file = tempfile::tempfile().unwrap();
        assert!(matches!(
            SharedRegion::attach(file.into(), 1),
            Err(SetupError::Io { .. } | SetupError::NotSealed { .. })
        ));
    }
}
