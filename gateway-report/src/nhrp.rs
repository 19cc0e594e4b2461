//! NHRP: `show ip nhrp`, `show ip nhrp traffic`, `clear ip nhrp`.
