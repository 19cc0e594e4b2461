//! `show version`.
