//! Socket options of the IKE sockets: bypassing the policies, and ESP in
//! UDP taken off port 4500 by the kernel.

use std::{
    io::{self, ErrorKind},
    os::fd::{AsFd, AsRawFd},
};

use super::{
    AF_INET, UDP_ENCAP_ESPINUDP,
    codec::{invalid_data, put_u16},
    layout as l,
    policy::XfrmDir,
};
use crate::sys::{context, os_error};

/// Lets `socket`'s own packets bypass the IPsec policies, both ways, as
/// strongSwan's kernel-netlink plugin does for its IKE sockets: a
/// per-socket policy (`IP_XFRM_POLICY`) with action allow and no template,
/// one per direction. Without it a policy covering the peer's address
/// (e.g. a tunnel-mode /32, or an "any" policy) would take IKE into ESP
/// or drop it. IPv4 sockets.
pub fn bypass_policies(socket: &impl AsFd) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    for dir in [XfrmDir::Out, XfrmDir::In] {
        // Selector all zero but the family, zero lifetimes: what
        // strongSwan passes (the kernel compiles it with
        // xfrm_compile_policy).
        let mut info = [0u8; l::USERPOLICY_INFO_LEN];
        put_u16(&mut info, l::POL_SEL + l::SEL_FAMILY, AF_INET);
        info[l::POL_DIR] = dir.to_kernel();
        info[l::POL_ACTION] = 0;
        setsockopt_bytes(fd, libc::SOL_IP, libc::IP_XFRM_POLICY, &info)
            .map_err(|e| context(e, format!("setting the {dir} bypass policy of a socket")))?;
    }
    Ok(())
}

/// Makes the kernel take ESP in UDP (RFC 3948) off `socket` (`UDP_ENCAP`
/// `UDP_ENCAP_ESPINUDP`): packets with a non-zero first word are ESP and
/// go to XFRM, those with the non-ESP marker stay on the socket for IKE.
/// For the port 4500 socket of the kernel datapath.
pub fn set_udp_encap_espinudp(socket: &impl AsFd) -> io::Result<()> {
    let fd = socket.as_fd().as_raw_fd();
    let kind = libc::c_int::from(UDP_ENCAP_ESPINUDP);
    setsockopt_bytes(fd, libc::SOL_UDP, libc::UDP_ENCAP, &kind.to_ne_bytes())
        .map_err(|e| context(e, "setting UDP_ENCAP_ESPINUDP on a socket"))
}

/// The `UDP_ENCAP` type set on `socket` (0 for none).
pub fn udp_encap(socket: &impl AsFd) -> io::Result<u16> {
    let fd = socket.as_fd().as_raw_fd();
    let mut value: libc::c_int = 0;
    #[allow(clippy::cast_possible_truncation)] // 4 bytes
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a live int and its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_ENCAP,
            (&raw mut value).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc < 0 {
        return Err(os_error("reading UDP_ENCAP of a socket"));
    }
    u16::try_from(value).map_err(|_| invalid_data(&format!("UDP_ENCAP type {value}")))
}

fn setsockopt_bytes(fd: i32, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::new(ErrorKind::InvalidInput, "socket option too large"))?;
    // SAFETY: passes a live buffer and its length.
    let rc = unsafe { libc::setsockopt(fd, level, name, value.as_ptr().cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
