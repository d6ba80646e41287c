//! Flavor choice for a pool label, as Nodepool makes it: with `min-ram`, the first flavor
//! sorted by RAM then name that has enough RAM and whose name contains `flavor-name`
//! (if given); otherwise the flavor whose name or id equals `flavor-name`.
//!
//! A pure function over a flavor list so that the launcher can cache the list (Nodepool
//! caches flavors until the cloud changes) and tests need no cloud.

use super::types::Flavor;

/// What a label asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlavorWanted<'a> {
    /// `min-ram` (MiB); `None` or 0 means "match by name" (Python tests `if min_ram:`).
    pub min_ram: Option<u64>,
    /// `flavor-name`: substring filter with `min_ram`, exact name/id otherwise.
    pub flavor_name: Option<&'a str>,
}

/// Picks the flavor for `wanted` from `flavors`, or `None` when nothing matches.
pub fn choose_flavor<'f>(flavors: &'f [Flavor], wanted: &FlavorWanted<'_>) -> Option<&'f Flavor> {
    match wanted.min_ram.filter(|r| *r > 0) {
        Some(min_ram) => {
            let mut sorted: Vec<&Flavor> = flavors.iter().collect();
            sorted.sort_by(|a, b| a.ram_mb().cmp(&b.ram_mb()).then(a.name.cmp(&b.name)));
            sorted.into_iter().find(|f| {
                f.ram_mb() >= min_ram && wanted.flavor_name.is_none_or(|n| f.name.contains(n))
            })
        }
        None => {
            let name = wanted.flavor_name?;
            flavors.iter().find(|f| f.name == name || f.id == name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(id: &str, name: &str, ram: u64) -> Flavor {
        Flavor {
            id: id.into(),
            name: name.into(),
            ram: Some(ram),
            vcpus: Some(1),
            ..Default::default()
        }
    }

    fn flavors() -> Vec<Flavor> {
        vec![
            f("4", "m1.large", 8192),
            f("2", "m1.small", 2048),
            f("5", "b.small", 2048),
            f("3", "m1.medium", 4096),
            f("9", "gpu.medium", 4096),
        ]
    }

    fn pick(min_ram: Option<u64>, name: Option<&str>) -> Option<String> {
        let fl = flavors();
        choose_flavor(
            &fl,
            &FlavorWanted {
                min_ram,
                flavor_name: name,
            },
        )
        .map(|f| f.name.clone())
    }

    #[test]
    fn by_min_ram_sorted_by_ram_then_name() {
        assert_eq!(pick(Some(1024), None).as_deref(), Some("b.small"));
        assert_eq!(pick(Some(3000), None).as_deref(), Some("gpu.medium"));
        assert_eq!(pick(Some(3000), Some("m1")).as_deref(), Some("m1.medium"));
        assert_eq!(pick(Some(2048), Some("m1.")).as_deref(), Some("m1.small"));
        assert_eq!(pick(Some(100_000), None), None);
    }

    #[test]
    fn by_exact_name_or_id() {
        assert_eq!(pick(None, Some("m1.small")).as_deref(), Some("m1.small"));
        assert_eq!(pick(Some(0), Some("4")).as_deref(), Some("m1.large"));
        // exact, not substring, without min-ram
        assert_eq!(pick(None, Some("m1")), None);
        assert_eq!(pick(None, None), None);
    }
}
