//! BGP: `show bgp summary` and `show bgp`.
