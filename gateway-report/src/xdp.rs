//! The uplink filter: `show xdp`.
