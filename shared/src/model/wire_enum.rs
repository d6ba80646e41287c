//! [`wire_enum!`]: one definition for every closed set of wire names in the records
//! (node, request, build, upload and component states, component kinds), so each gets the
//! same API — `ALL`, `as_str`, `from_wire`, `Display`, `FromStr` with an error listing
//! the valid names, and serde with the wire names — from the one list of
//! `Variant = "wire-name"` pairs.

/// `wire_enum!(/// doc  Name, "what it is (for errors)", { /// doc  Variant = "wire", … });`
macro_rules! wire_enum {
    (
        $(#[$doc:meta])* $name:ident, $kind:literal, {
            $(#[$fdoc:meta])* $first:ident = $first_wire:literal
            $(, $(#[$vdoc:meta])* $var:ident = $wire:literal)* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $(#[$fdoc])* #[serde(rename = $first_wire)] $first,
            $($(#[$vdoc])* #[serde(rename = $wire)] $var,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$first_wire $(, $wire)*].len()] =
                [$name::$first $(, $name::$var)*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $name::$first => $first_wire,
                    $($name::$var => $wire,)*
                }
            }

            /// Parses a wire name.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s {
                    $first_wire => Some($name::$first),
                    $($wire => Some($name::$var),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::ModelError;
            fn from_str(s: &str) -> Result<Self, $crate::model::ModelError> {
                Self::from_wire(s).ok_or_else(|| $crate::model::ModelError::InvalidId {
                    kind: $kind,
                    value: s.to_string(),
                    reason: concat!("not one of ", $first_wire $(, ", ", $wire)*),
                })
            }
        }
    };
}
pub(crate) use wire_enum;
