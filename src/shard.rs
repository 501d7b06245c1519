//! `probe.shard = "K/N"`: N srewatch instances on N EM nodes split the probe targets between
//! them with no coordination service. Target `t` belongs to instance K (1-based) when
//! `fnv1a64(t.name) % N == K - 1`: a stable hash, the same on every node and every release, so
//! each target is probed by exactly one instance, and adding targets never moves the others.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based index of this instance.
    pub k: u32,
    pub n: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { k: 1, n: 1 }
    }
}

impl Shard {
    /// Whether the target called `name` is this instance's.
    pub fn owns(&self, name: &str) -> bool {
        fnv1a64(name.as_bytes()) % u64::from(self.n) == u64::from(self.k - 1)
    }
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?} is not of the form \"K/N\""))?;
        let k: u32 = k
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: K is not a whole number"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard {s:?}: N is not a whole number"))?;
        if n == 0 || k == 0 || k > n {
            return Err(format!("shard {s:?}: need 1 <= K <= N"));
        }
        Ok(Shard { k, n })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// 64-bit FNV-1a: tiny, stable across platforms and releases (std's hashers are not).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn every_target_has_exactly_one_owner() {
        let names: Vec<String> = (0..1000).map(|i| format!("cp{i}")).collect();
        for n in 1..=5u32 {
            let shards: Vec<Shard> = (1..=n).map(|k| Shard { k, n }).collect();
            let mut per = vec![0usize; n as usize];
            for name in &names {
                let owners: Vec<_> = shards.iter().filter(|s| s.owns(name)).collect();
                assert_eq!(owners.len(), 1, "{name} in {n} shards");
                per[(owners[0].k - 1) as usize] += 1;
            }
            // Roughly even: no shard holds more than twice its share.
            assert!(per.iter().all(|&c| c <= 2 * 1000 / n as usize), "{per:?}");
        }
    }

    #[test]
    fn parse() {
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { k: 2, n: 3 });
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("3".parse::<Shard>().is_err());
        assert_eq!(Shard { k: 1, n: 2 }.to_string(), "1/2");
    }
}
