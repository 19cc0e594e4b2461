//! Address pools: `show ip local pool`.
