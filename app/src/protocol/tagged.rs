//! Reading internally tagged enums (`{"type": "snapshot", ...}`) whose tag
//! is the first key, without serde's buffering. serde's derive for
//! `#[serde(tag = ...)]` first copies the whole object into an in-memory
//! `Content` tree (the tag may come last) and then reads every variant out
//! of that tree, which compiles a second deserializer for every type below
//! it into the wasm (~100 KB of the bundle for our protocol). Our server
//! always writes the tag first (serde's `Serialize` for tagged enums does),
//! so the browser reads the tag and hands the rest of the same JSON map
//! straight to the variant's own `Deserialize`. A message whose tag is not
//! first is refused with a clear error rather than misread.

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, Error, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// An internally tagged enum read with [`deserialize`].
pub trait TagFirst: Sized {
    /// The tag's key (`"type"`, `"kind"`).
    const TAG: &'static str;
    /// What is expected, for error messages.
    const EXPECTING: &'static str;
    /// The tags this enum knows, for error messages.
    const VARIANTS: &'static [&'static str];

    /// Reads the variant named `tag` from the rest of the map.
    fn variant<'de, D: Deserializer<'de>>(tag: &str, rest: D) -> Result<Self, D::Error>;
}

/// `Deserialize::deserialize` for a [`TagFirst`] enum.
pub fn deserialize<'de, D: Deserializer<'de>, T: TagFirst>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(TagVisitor(PhantomData))
}

/// The error for a tag the enum does not know.
pub fn unknown<E: Error, T: TagFirst>(tag: &str) -> E {
    E::unknown_variant(tag, T::VARIANTS)
}

struct TagVisitor<T>(PhantomData<T>);

impl<'de, T: TagFirst> Visitor<'de> for TagVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let key: Option<String> = map.next_key()?;
        match key {
            Some(k) if k == T::TAG => {
                let tag: String = map.next_value()?;
                T::variant(&tag, MapAccessDeserializer::new(map))
            }
            Some(k) => Err(A::Error::custom(format_args!(
                "expected {:?} as the first key of {}, found {k:?}",
                T::TAG,
                T::EXPECTING
            ))),
            None => Err(A::Error::missing_field(T::TAG)),
        }
    }
}

/// Implements `Deserialize` (tag first) for an enum of newtype variants,
/// each variant's fields flattened next to the tag.
macro_rules! tag_first_newtypes {
    ($enum:ident, $tag:literal, $expecting:literal, { $($name:literal => $variant:ident),* $(,)? }) => {
        impl $crate::protocol::tagged::TagFirst for $enum {
            const TAG: &'static str = $tag;
            const EXPECTING: &'static str = $expecting;
            const VARIANTS: &'static [&'static str] = &[$($name),*];

            fn variant<'de, D: serde::Deserializer<'de>>(tag: &str, rest: D) -> Result<Self, D::Error> {
                match tag {
                    $($name => serde::Deserialize::deserialize(rest).map($enum::$variant),)*
                    other => Err($crate::protocol::tagged::unknown::<D::Error, Self>(other)),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $enum {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::protocol::tagged::deserialize(d)
            }
        }
    };
}
pub(crate) use tag_first_newtypes;
