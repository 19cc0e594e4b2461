//! Security policies: direction, action, the template naming the SA, and
//! the NEWPOLICY request.

use std::{fmt, io, net::Ipv4Addr};

use super::{
    AF_INET, XFRMA_TMPL,
    codec::{Message, attributes, get_addr, get_u32, invalid_data, put_addr, put_u16, put_u32},
    layout as l,
    selector::{XfrmLifetime, XfrmMode, XfrmSelector},
};
use crate::net::IPPROTO_ESP;

/// The direction of a policy (`XFRM_POLICY_IN/OUT/FWD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XfrmDir {
    /// Packets delivered to this host.
    In,
    /// Packets this host sends.
    Out,
    /// Packets this host forwards (decrypted and routed on, in tunnel
    /// mode).
    Fwd,
}

impl XfrmDir {
    pub(super) fn to_kernel(self) -> u8 {
        match self {
            XfrmDir::In => 0,
            XfrmDir::Out => 1,
            XfrmDir::Fwd => 2,
        }
    }

    pub(super) fn from_kernel(dir: u8) -> io::Result<Self> {
        match dir {
            0 => Ok(XfrmDir::In),
            1 => Ok(XfrmDir::Out),
            2 => Ok(XfrmDir::Fwd),
            other => Err(invalid_data(&format!("XFRM policy direction {other}"))),
        }
    }
}

impl fmt::Display for XfrmDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XfrmDir::In => "in",
            XfrmDir::Out => "out",
            XfrmDir::Fwd => "fwd",
        })
    }
}

/// What a policy does with the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XfrmAction {
    /// Let them through: with a template, through the SA it names; without
    /// one, in the clear (a bypass).
    Allow,
    /// Drop them.
    Block,
}

/// A policy's template (`struct xfrm_user_tmpl`): which ESP SA protects
/// what the policy matches. Always ESP, any SPI, any algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmTemplate {
    /// The SA's outer source: needed in tunnel mode; 0.0.0.0 (any, from
    /// the packet) is fine in transport mode, where strongSwan leaves it.
    pub src: Ipv4Addr,
    /// The SA's outer destination (as `src`).
    pub dst: Ipv4Addr,
    /// The reqid of the SAs to use.
    pub reqid: u32,
    pub mode: XfrmMode,
}

impl XfrmTemplate {
    pub(super) fn encode(&self, out: &mut [u8]) {
        put_addr(&mut out[l::TMPL_ID + l::ID_DADDR..], self.dst);
        // SPI 0: any SA with the reqid.
        out[l::TMPL_ID + l::ID_PROTO] = IPPROTO_ESP;
        put_u16(out, l::TMPL_FAMILY, AF_INET);
        put_addr(&mut out[l::TMPL_SADDR..], self.src);
        put_u32(out, l::TMPL_REQID, self.reqid);
        out[l::TMPL_MODE] = self.mode.to_kernel();
        // share XFRM_SHARE_ANY, not optional.
        out[l::TMPL_SHARE] = 0;
        out[l::TMPL_OPTIONAL] = 0;
        // Any algorithms (iproute2 and strongSwan: ~0).
        put_u32(out, l::TMPL_AALGOS, u32::MAX);
        put_u32(out, l::TMPL_EALGOS, u32::MAX);
        put_u32(out, l::TMPL_CALGOS, u32::MAX);
    }

    pub(super) fn decode(b: &[u8]) -> io::Result<XfrmTemplate> {
        Ok(XfrmTemplate {
            src: get_addr(b, l::TMPL_SADDR),
            dst: get_addr(b, l::TMPL_ID + l::ID_DADDR),
            reqid: get_u32(b, l::TMPL_REQID),
            mode: XfrmMode::from_kernel(b[l::TMPL_MODE])?,
        })
    }
}

/// A security policy (`XFRM_MSG_NEWPOLICY`): what traffic, which
/// direction, and through which SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XfrmPolicy {
    pub selector: XfrmSelector,
    pub dir: XfrmDir,
    /// Lower wins among overlapping policies.
    pub priority: u32,
    pub action: XfrmAction,
    /// The SA to use; `None` with [`XfrmAction::Allow`] lets the traffic
    /// through in the clear. A policy read back from the kernel with
    /// several templates reports the first.
    pub template: Option<XfrmTemplate>,
}

impl XfrmPolicy {
    pub(super) fn label(&self) -> String {
        format!(
            "{} dir {} priority {}",
            self.selector, self.dir, self.priority
        )
    }

    /// `xfrm_userpolicy_info` and the template.
    pub(super) fn encode(&self) -> Message {
        let mut info = [0u8; l::USERPOLICY_INFO_LEN];
        self.selector
            .encode(&mut info[l::POL_SEL..l::POL_SEL + l::SELECTOR_LEN]);
        // No limits, as `ip xfrm policy add` sets (policies do not expire
        // by bytes or packets).
        XfrmLifetime::default().encode(&mut info[l::POL_LFT..l::POL_CURLFT]);
        put_u32(&mut info, l::POL_PRIORITY, self.priority);
        // Index 0: the kernel picks one.
        info[l::POL_DIR] = self.dir.to_kernel();
        info[l::POL_ACTION] = match self.action {
            XfrmAction::Allow => 0,
            XfrmAction::Block => 1,
        };
        info[l::POL_FLAGS] = 0;
        info[l::POL_SHARE] = 0;
        let mut msg = Message::new(&info);
        if let Some(tmpl) = &self.template {
            let mut t = [0u8; l::USER_TMPL_LEN];
            tmpl.encode(&mut t);
            msg.attr(XFRMA_TMPL, &t);
        }
        msg
    }

    /// From `xfrm_userpolicy_info` and its attributes.
    pub(super) fn decode(payload: &[u8]) -> io::Result<XfrmPolicy> {
        let info = payload
            .get(..l::USERPOLICY_INFO_LEN)
            .ok_or_else(|| invalid_data(&format!("a policy of {} bytes", payload.len())))?;
        let mut template = None;
        for (kind, value) in attributes(&payload[l::USERPOLICY_INFO_LEN..]) {
            if kind == XFRMA_TMPL && template.is_none() {
                let t = value.get(..l::USER_TMPL_LEN).ok_or_else(|| {
                    invalid_data(&format!("a policy template of {} bytes", value.len()))
                })?;
                template = Some(XfrmTemplate::decode(t)?);
            }
        }
        Ok(XfrmPolicy {
            selector: XfrmSelector::decode(&info[l::POL_SEL..l::POL_LFT])?,
            dir: XfrmDir::from_kernel(info[l::POL_DIR])?,
            priority: get_u32(info, l::POL_PRIORITY),
            action: if info[l::POL_ACTION] == 0 {
                XfrmAction::Allow
            } else {
                XfrmAction::Block
            },
            template,
        })
    }
}

/// `xfrm_userpolicy_id`: which policy (DELPOLICY, GETPOLICY), by selector
/// and direction (index 0).
pub(super) fn userpolicy_id(selector: &XfrmSelector, dir: XfrmDir) -> [u8; l::USERPOLICY_ID_LEN] {
    let mut id = [0u8; l::USERPOLICY_ID_LEN];
    selector.encode(&mut id[l::POLID_SEL..l::POLID_SEL + l::SELECTOR_LEN]);
    put_u32(&mut id, l::POLID_INDEX, 0);
    id[l::POLID_DIR] = dir.to_kernel();
    id
}
