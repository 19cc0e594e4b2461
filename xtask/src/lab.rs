//! `cargo xtask lab`: the XDP and IKE lab in network namespaces.
//!
//! Part one: a hub and two spokes on a bridge, `gateway run` on the hub with
//! the XDP uplink filter attached natively to its veth, real traffic from
//! the spokes, and `gateway show xdp` printed. Part two: strongSwan spokes
//! dial the hub with IKEv2 and get addresses. The full hub-and-spokes demo
//! with traffic through the datapath is `cargo xtask demo` (`demo.rs`).

use anyhow::Context as _;
use integration::{ike_lab::IkeLab, xdp_lab::XdpLab};

use crate::{
    LabArgs, setup,
    util::{self, Step},
};

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    setup::run()?;
    let gateway = util::build_gateway(false)?;

    let step = Step::new("lab", "start hub and spokes in network namespaces");
    let lab = XdpLab::start(&gateway, "lab").context("starting the lab")?;
    step.say(format!(
        "hub {} (uplink {} = {}), spokes {}",
        lab.hub.name(),
        lab.uplink,
        lab.hub_address,
        lab.spokes
            .iter()
            .map(|s| format!("{} = {}", s.netns.name(), s.address))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let step = Step::new("lab", "send traffic from the spokes");
    let sent = lab.send_traffic().context("sending traffic")?;
    for line in sent.describe() {
        step.say(line);
    }

    println!("\n$ gateway show xdp    (in the hub's namespace)\n");
    print!("{}", lab.show_xdp_text()?);
    let summary = lab.check_counters(&sent)?;
    println!();
    for line in summary {
        println!("lab: {line}");
    }

    if args.keep {
        println!("\nlab: running until Ctrl-C. Try, in another shell:");
        println!(
            "  ip netns exec {} {} --socket {} show xdp",
            lab.hub.name(),
            gateway.display(),
            lab.socket.display()
        );
        println!(
            "  ip netns exec {} ping -c3 {}",
            lab.spokes[0].netns.name(),
            lab.hub_address
        );
        integration::wait_for_interrupt(None)?;
    }
    let (status, log) = lab.stop()?;
    println!("\nlab: the gateway's log:\n{}", log.trim_end());
    println!("\nlab: gateway stopped ({status}); XDP detached, namespaces removed");

    ike_part(&gateway, args.keep)
}

/// Part two: strongSwan spokes dial the hub with IKEv2 and get addresses.
fn ike_part(gateway: &std::path::Path, keep: bool) -> anyhow::Result<()> {
    let step = Step::new("lab", "IKEv2: a hub and two strongSwan spokes");
    let mut lab = IkeLab::start(gateway, "labike", 2, "").context("starting the IKEv2 lab")?;
    step.say(format!(
        "hub {} runs `gateway run --config {}`",
        lab.hub.name(),
        lab.config.display()
    ));
    let proposals = [
        ("aes256-sha256-x25519", "aes256gcm16"),
        ("aes128-sha256-modp2048", "aes128-sha1"),
    ];
    for (n, (ike, esp)) in proposals.iter().enumerate() {
        let charon = lab.charon(n + 1, |p| {
            (*ike).clone_into(&mut p.proposals);
            (*esp).clone_into(&mut p.esp_proposals);
        })?;
        charon.initiate("spoke", "hub")?;
        let sa = charon
            .list_sas()?
            .into_iter()
            .next()
            .context("no SA on the spoke")?;
        step.say(format!(
            "spoke{} ({ike} / {esp}): IKE {} , CHILD {}, address {}",
            n + 1,
            sa.state,
            sa.children.first().map_or("-", |c| c.state.as_str()),
            sa.local_vip_v4()
                .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        ));
    }
    for what in [
        &["crypto", "ikev2", "sa"][..],
        &["crypto", "session"],
        &["ip", "local", "pool"],
        &["xdp"],
    ] {
        println!("\n$ gateway show {}\n", what.join(" "));
        let mut args = vec!["show"];
        args.extend_from_slice(what);
        print!("{}", lab.gateway().cli_ok(&args)?);
    }
    if keep {
        println!("\nlab: running until Ctrl-C. Try, in another shell:");
        println!(
            "  ip netns exec {} {} --socket {} show crypto ikev2 sa",
            lab.hub.name(),
            gateway.display(),
            lab.socket.display()
        );
        integration::wait_for_interrupt(None)?;
    }
    let log = lab.stop_gateway()?;
    println!("\nlab: the gateway's log:\n{}", log.trim_end());
    println!("\nlab: done; namespaces removed");
    Ok(())
}
