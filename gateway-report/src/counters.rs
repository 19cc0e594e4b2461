//! Counter sets declared once. A set is one list of entries (doc, id,
//! field, label) given to `counters!`, which makes of it the report struct
//! (one `u64` field per counter, after the struct's other fields, serde
//! field names as listed) and an enum of counter ids with [`Counter::ALL`],
//! names, labels, and [`Counters::get`] / [`Counters::set`] on the report.
//! Whoever counts keeps one slot per id and fills the report by iterating
//! `ALL`; whoever renders iterates `ALL` too: a counter cannot be counted
//! without being reported and shown.

/// One counter of a set: an id that indexes the set's slots.
pub trait Counter: Copy + Eq + core::fmt::Debug + 'static {
    /// Every counter of the set, in report order; `ALL[c.index()] == c`.
    const ALL: &'static [Self];
    /// Its position in [`Counter::ALL`].
    fn index(self) -> usize;
    /// The report's field for it: the JSON key.
    fn name(self) -> &'static str;
    /// What the text views print beside (or above) its value.
    fn label(self) -> &'static str;
    /// What it counts (the field's doc comment).
    fn doc(self) -> &'static str;
}

/// A report that carries one counter set.
pub trait Counters {
    type Id: Counter;
    fn get(&self, id: Self::Id) -> u64;
    fn set(&mut self, id: Self::Id, value: u64);
}

/// Declares a report struct with its counter set; see the module doc.
///
/// ```text
/// counters! {
///     /// The struct's doc.
///     pub struct Report {
///         pub name: String,
///     }
///     /// The ids' doc.
///     pub enum ReportCounter {
///         /// What it counts.
///         RxPackets(rx_packets) = "packets input",
///     }
/// }
/// ```
macro_rules! counters {
    (
        $(#[$smeta:meta])*
        pub struct $report:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $fty:ty, )*
        }
        $(#[$emeta:meta])*
        pub enum $id:ident {
            $( $(#[doc = $doc:literal])+ $variant:ident($counter:ident) = $label:literal, )+
        }
    ) => {
        $(#[$smeta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct $report {
            $( $(#[$fmeta])* pub $field: $fty, )*
            $( $(#[doc = $doc])+ pub $counter: u64, )+
        }

        $(#[$emeta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $id {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl $id {
            /// How many counters the set has.
            pub const COUNT: usize = <Self as $crate::counters::Counter>::ALL.len();
        }

        impl $crate::counters::Counter for $id {
            const ALL: &'static [Self] = &[$( $id::$variant ),+];

            fn index(self) -> usize {
                self as usize
            }

            fn name(self) -> &'static str {
                match self {
                    $( $id::$variant => stringify!($counter), )+
                }
            }

            fn label(self) -> &'static str {
                match self {
                    $( $id::$variant => $label, )+
                }
            }

            fn doc(self) -> &'static str {
                match self {
                    $( $id::$variant => concat!($($doc),+).trim_ascii(), )+
                }
            }
        }

        impl $crate::counters::Counters for $report {
            type Id = $id;

            fn get(&self, id: $id) -> u64 {
                match id {
                    $( $id::$variant => self.$counter, )+
                }
            }

            fn set(&mut self, id: $id, value: u64) {
                match id {
                    $( $id::$variant => self.$counter = value, )+
                }
            }
        }
    };
}

pub(crate) use counters;

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{Counter, Counters};

    /// Every counter of `R`'s set: its index, a field of the JSON named
    /// as the set says, and get/set reaching that field and no other.
    pub fn check_set<R>()
    where
        R: Counters + Default + serde::Serialize,
    {
        let ids = <R::Id as Counter>::ALL;
        assert!(!ids.is_empty());
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(id.index(), i, "{id:?}");
            assert!(!id.label().is_empty() && !id.doc().is_empty(), "{id:?}");
            assert_eq!(
                ids.iter().filter(|other| other.name() == id.name()).count(),
                1,
                "{id:?}"
            );
        }
        let mut report = R::default();
        for (value, &id) in (1000..).zip(ids) {
            report.set(id, value);
        }
        let json = serde_json::to_value(&report).unwrap();
        for (value, &id) in (1000..).zip(ids) {
            assert_eq!(report.get(id), value, "{id:?}");
            assert_eq!(json[id.name()], value, "{id:?} in {json}");
        }
        let numbers = json
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v.as_u64().is_some_and(|n| n >= 1000))
            .count();
        assert_eq!(
            numbers,
            ids.len(),
            "a counter field outside the set: {json}"
        );
    }
}
