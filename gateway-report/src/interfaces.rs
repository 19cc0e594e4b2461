//! The datapath: `show interfaces virtual-access` (interfaces, SAs, datapath-wide counters).
