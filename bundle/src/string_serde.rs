//! `string_serde!(T)`: a seed value that goes to and from TOML as a string
//! through `Display` and `FromStr`, checked on the way in (the TOML error
//! around a refusal names the file, line and key).

#[macro_export]
macro_rules! string_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse()
                    .map_err(|e: $crate::error::Error| serde::de::Error::custom(e))
            }
        }
    };
}
