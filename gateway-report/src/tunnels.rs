//! A spoke's tunnels to its hubs: `show interfaces tunnel`.
