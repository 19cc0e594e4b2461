//! `codepoint!`: an enum for one IANA registry, with an `Unknown(n)` variant
//! so that values without a name here survive parse -> emit unchanged.
//!
//! Each generated enum has `From<repr>` / `From<Enum> for repr`, `name()`
//! (the registry's name, `None` for `Unknown`) and `Display` (the name, or
//! `Enum(n)` for an unknown value).

macro_rules! codepoint {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($repr:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value without a name here; kept so that it is re-emitted
            /// unchanged. `From` never produces it for a named value.
            Unknown($repr),
        }

        impl From<$repr> for $name {
            fn from(value: $repr) -> Self {
                match value {
                    $( $value => Self::$variant, )+
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $repr {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// The registry's name for this value; `None` for `Unknown`.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$variant => Some($text), )+
                    Self::Unknown(_) => None,
                }
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(name) => f.write_str(name),
                    None => write!(f, "{}({})", stringify!($name), <$repr>::from(*self)),
                }
            }
        }
    };
}
