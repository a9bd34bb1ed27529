//! Numbers Wiro sends as JSON numbers on some endpoints and as numeric strings on others
//! (`createdat` is `"1714608000"` in MyAgents and `1714608000` in Detail; `messagecount` is
//! `"24"`). We accept both and write numbers.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Unix time in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

/// An integer that may arrive as a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LenientInt(pub i64);

impl Serialize for UnixTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl Serialize for LenientInt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for UnixTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(IntVisitor)? {
            Some(v) => Ok(UnixTime(v)),
            None => Err(de::Error::custom(
                "expected a Unix time, got an empty value",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LenientInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(IntVisitor)? {
            Some(v) => Ok(LenientInt(v)),
            None => Err(de::Error::custom("expected an integer, got an empty value")),
        }
    }
}

/// For `Option<UnixTime>` fields: `null`, absent and `""` all mean "not set".
pub(crate) fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<UnixTime>, D::Error> {
    Ok(d.deserialize_any(IntVisitor)?.map(UnixTime))
}

/// Accepts an integer, a float with no fraction, a numeric string, `""` or `null`.
struct IntVisitor;

impl<'de> Visitor<'de> for IntVisitor {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a numeric string")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom(format!("{v} is too large")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.is_finite() {
            Ok(Some(v as i64))
        } else {
            Err(E::custom(format!("{v} is not a whole number")))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| E::custom(format!("{v:?} is not an integer")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(IntVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Row {
        at: UnixTime,
        #[serde(default, deserialize_with = "opt_time")]
        maybe: Option<UnixTime>,
        count: LenientInt,
    }

    #[test]
    fn numbers_and_numeric_strings_are_both_accepted() {
        let a: Row = serde_json::from_str(r#"{"at":"1714608000","maybe":1,"count":"24"}"#).unwrap();
        let b: Row = serde_json::from_str(r#"{"at":1714608000,"maybe":"","count":24}"#).unwrap();
        assert_eq!(a.at, b.at);
        assert_eq!(a.maybe, Some(UnixTime(1)));
        assert_eq!(b.maybe, None);
        assert_eq!(a.count, LenientInt(24));
    }

    #[test]
    fn absent_and_null_optional_times_are_none() {
        let r: Row = serde_json::from_str(r#"{"at":1,"count":1}"#).unwrap();
        assert_eq!(r.maybe, None);
        let r: Row = serde_json::from_str(r#"{"at":1,"count":1,"maybe":null}"#).unwrap();
        assert_eq!(r.maybe, None);
    }

    #[test]
    fn garbage_is_rejected_with_the_value_named() {
        let err = serde_json::from_str::<Row>(r#"{"at":"soon","count":1}"#).unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
    }
}
