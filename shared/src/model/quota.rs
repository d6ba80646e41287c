//! Resource arithmetic for quota decisions, like Python's
//! `QuotaInformation`: named quantities (`instances`, `cores`, `ram` in MiB, plus any
//! driver key such as `volumes` or `volume-gb`) with a default for keys not present —
//! 0 for usage and needs, +∞ for limits.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// `instances`.
pub const INSTANCES: &str = "instances";
/// `cores`.
pub const CORES: &str = "cores";
/// `ram` (MiB).
pub const RAM: &str = "ram";
/// `volumes`.
pub const VOLUMES: &str = "volumes";
/// `volume-gb`.
pub const VOLUME_GB: &str = "volume-gb";

/// A set of resource quantities with a default for missing keys.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaInformation {
    values: BTreeMap<String, f64>,
    default: f64,
}

impl Default for QuotaInformation {
    fn default() -> Self {
        Self::usage()
    }
}

impl QuotaInformation {
    /// Empty usage/need: every key is 0.
    pub fn usage() -> Self {
        QuotaInformation {
            values: BTreeMap::new(),
            default: 0.0,
        }
    }

    /// Unlimited limits: every key is +∞ until set.
    pub fn unlimited() -> Self {
        QuotaInformation {
            values: BTreeMap::new(),
            default: f64::INFINITY,
        }
    }

    /// Python's `QuotaInformation(cores, instances, ram, default)`: `None` → `default`.
    pub fn new(cores: Option<f64>, instances: Option<f64>, ram: Option<f64>, default: f64) -> Self {
        let mut q = QuotaInformation {
            values: BTreeMap::new(),
            default,
        };
        q.set(CORES, cores.unwrap_or(default));
        q.set(INSTANCES, instances.unwrap_or(default));
        q.set(RAM, ram.unwrap_or(default));
        q
    }

    /// Limits from cloud values where `-1` means unlimited (OpenStack `max_total_*`).
    pub fn from_cloud_limits<'a>(limits: impl IntoIterator<Item = (&'a str, i64)>) -> Self {
        let mut q = Self::unlimited();
        for (k, v) in limits {
            q.set(k, if v < 0 { f64::INFINITY } else { v as f64 });
        }
        q
    }

    /// Usage from a node's `resources` dict; non-numeric values are ignored.
    pub fn from_resources(resources: &Map<String, Value>) -> Self {
        let mut q = Self::usage();
        for (k, v) in resources {
            if let Some(f) = v.as_f64() {
                q.set(k, f);
            }
        }
        q
    }

    /// The value for `key` (the default if not set).
    pub fn get(&self, key: &str) -> f64 {
        self.values.get(key).copied().unwrap_or(self.default)
    }

    /// Sets `key`.
    pub fn set(&mut self, key: &str, value: f64) {
        self.values.insert(key.to_string(), value);
    }

    /// The default for keys not set (0 or +∞).
    pub fn default_value(&self) -> f64 {
        self.default
    }

    /// Keys explicitly set, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Explicitly set `(key, value)` pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.values.iter().map(|(k, v)| (k.as_str(), *v))
    }

    fn combine(&mut self, other: &QuotaInformation, sign: f64) {
        let keys: Vec<String> = other
            .values
            .keys()
            .filter(|k| !self.values.contains_key(*k))
            .cloned()
            .collect();
        for k in keys {
            self.values.insert(k, self.default);
        }
        for (k, v) in self.values.iter_mut() {
            let o = other.get(k);
            // ∞ − ∞ (unlimited minus unlimited) stays unlimited rather than NaN.
            if v.is_infinite() && o.is_infinite() {
                continue;
            }
            *v += sign * o;
        }
    }

    /// Adds `other` key by key (keys missing on either side use that side's default).
    pub fn add(&mut self, other: &QuotaInformation) {
        self.combine(other, 1.0);
    }

    /// Subtracts `other` key by key (keys missing on either side use that side's default).
    pub fn subtract(&mut self, other: &QuotaInformation) {
        self.combine(other, -1.0);
    }

    /// Adds (`sign` 1) or subtracts (-1) the usage `cores`, `instances`, `ram` exactly as
    /// [`Self::add`] / [`Self::subtract`] of that usage would, without building it (a
    /// node's standard `resources`, counted for every node a cache load reads).
    pub fn combine_standard(&mut self, [cores, instances, ram]: [i64; 3], sign: f64) {
        for k in [CORES, INSTANCES, RAM] {
            if !self.values.contains_key(k) {
                self.values.insert(k.to_string(), self.default);
            }
        }
        for (k, v) in self.values.iter_mut() {
            let o = match k.as_str() {
                CORES => cores as f64,
                INSTANCES => instances as f64,
                RAM => ram as f64,
                _ => 0.0,
            };
            if v.is_infinite() && o.is_infinite() {
                continue;
            }
            *v += sign * o;
        }
    }

    /// True if no value is negative.
    pub fn non_negative(&self) -> bool {
        self.values.values().all(|v| *v >= 0.0) && self.default >= 0.0
    }

    /// True if `need` fits into `self` (taken as the remaining room): `self − need ≥ 0`
    /// for every key.
    /// Works key by key without building `self − need` (an assignment pass asks this
    /// for every waiting request of a tenant with limits).
    pub fn fits(&self, need: &QuotaInformation) -> bool {
        // As `combine` does: ∞ − ∞ stays as it was.
        let left = |v: f64, o: f64| {
            if v.is_infinite() && o.is_infinite() {
                v
            } else {
                v - o
            }
        };
        self.default >= 0.0
            && self
                .values
                .iter()
                .all(|(k, v)| left(*v, need.get(k)) >= 0.0)
            && need
                .values
                .iter()
                .filter(|(k, _)| !self.values.contains_key(*k))
                .all(|(_, o)| left(self.default, *o) >= 0.0)
    }

    /// The explicitly set values as a `resources` dict for a node record (`cores`,
    /// `instances`, `ram` first, then other keys sorted; integral values as integers;
    /// infinite values omitted).
    pub fn to_resources(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: f64| {
            if !v.is_finite() {
                return;
            }
            let value = if v.fract() == 0.0 && v.abs() < 9.0e15 {
                Value::from(v as i64)
            } else {
                Value::from(v)
            };
            m.insert(k.to_string(), value);
        };
        for k in [CORES, INSTANCES, RAM] {
            if let Some(v) = self.values.get(k) {
                put(k, *v);
            }
        }
        for (k, v) in &self.values {
            if ![CORES, INSTANCES, RAM].contains(&k.as_str()) {
                put(k, *v);
            }
        }
        m
    }
}

impl fmt::Display for QuotaInformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.values.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{k}: {v}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn combine_standard_equals_add_and_subtract() {
        let starts = [
            QuotaInformation::usage(),
            QuotaInformation::unlimited(),
            QuotaInformation::new(Some(2.0), None, Some(-0.0), 0.0),
            QuotaInformation::from_cloud_limits([("cores", -1), ("volumes", 3)]),
        ];
        for start in starts {
            for v in [[4, 1, 8192], [0, 0, 0], [-3, i64::MAX, i64::MIN]] {
                for sign in [1.0, -1.0] {
                    let mut q = QuotaInformation::usage();
                    for (k, x) in [CORES, INSTANCES, RAM].into_iter().zip(v) {
                        q.set(k, x as f64);
                    }
                    let mut want = start.clone();
                    if sign > 0.0 {
                        want.add(&q);
                    } else {
                        want.subtract(&q);
                    }
                    let mut got = start.clone();
                    got.combine_standard(v, sign);
                    assert_eq!(
                        format!("{got:?}"),
                        format!("{want:?}"),
                        "{start} {v:?} {sign}"
                    );
                }
            }
        }
    }

    fn need(cores: f64, ram: f64) -> QuotaInformation {
        QuotaInformation::new(Some(cores), Some(1.0), Some(ram), 0.0)
    }

    #[test]
    fn missing_keys_default() {
        let u = QuotaInformation::usage();
        assert_eq!(u.get("cores"), 0.0);
        let l = QuotaInformation::unlimited();
        assert_eq!(l.get("volumes"), f64::INFINITY);
    }

    #[test]
    fn add_subtract_fits() {
        let mut limit =
            QuotaInformation::from_cloud_limits([("instances", 10), ("cores", 8), ("ram", -1)]);
        assert_eq!(limit.get("ram"), f64::INFINITY);
        let mut used = QuotaInformation::usage();
        used.add(&need(4.0, 8192.0));
        assert_eq!(used.get("cores"), 4.0);
        limit.subtract(&used);
        assert_eq!(limit.get("cores"), 4.0);
        assert_eq!(limit.get("instances"), 9.0);
        assert!(limit.fits(&need(4.0, 8192.0)));
        assert!(!limit.fits(&need(5.0, 1.0)));
        // A key only the need has (volumes) is unlimited in the limit.
        let mut n = need(1.0, 1.0);
        n.set("volumes", 3.0);
        assert!(limit.fits(&n));
        // But a pool limit on volumes applies.
        let mut pool = QuotaInformation::unlimited();
        pool.set("volumes", 2.0);
        assert!(!pool.fits(&n));
        // Unlimited minus unlimited is still unlimited.
        let mut a = QuotaInformation::unlimited();
        a.subtract(&QuotaInformation::unlimited());
        assert!(a.non_negative());
    }

    #[test]
    fn resources_round_trip() {
        let r = json!({"cores": 4, "instances": 1, "ram": 8192, "volume-gb": 80, "volumes": 1});
        let q = QuotaInformation::from_resources(r.as_object().unwrap());
        assert_eq!(q.get("volume-gb"), 80.0);
        assert_eq!(Value::Object(q.to_resources()), r);
        let keys: Vec<String> = q.to_resources().keys().cloned().collect();
        assert_eq!(keys, ["cores", "instances", "ram", "volume-gb", "volumes"]);
    }

    fn any_quota() -> impl proptest::strategy::Strategy<Value = QuotaInformation> {
        use proptest::prelude::*;
        let value = prop_oneof![
            (-4i32..8).prop_map(f64::from),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.5),
        ];
        let key = prop_oneof![Just("cores"), Just("instances"), Just("ram"), Just("gpu")];
        (
            prop_oneof![Just(0.0), Just(f64::INFINITY), Just(-1.0)],
            proptest::collection::btree_map(key.prop_map(str::to_string), value, 0..4),
        )
            .prop_map(|(default, values)| QuotaInformation { values, default })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]
        /// `fits` answers as `room − need` checked for a negative value does.
        #[test]
        fn fits_equals_subtracting_and_checking(room in any_quota(), need in any_quota()) {
            let mut left = room.clone();
            left.subtract(&need);
            proptest::prop_assert_eq!(room.fits(&need), left.non_negative());
        }
    }
}
