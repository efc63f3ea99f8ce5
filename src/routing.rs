//! Who owns what in a cluster: the owner of host `h` among `n` nodes is node number
//! `jump(fnv1a_64(h as UTF-8 bytes), n)` in `cluster.nodes` order; a cache or state item's owner
//! uses the same with `namespace|key`. The design fixes this so outside routers can compute it.
//!
//! Both functions are written here rather than taken from crates: FNV-1a is five lines, and
//! hashing a `&str` through `std::hash::Hash` (as the `fnv` crate's hasher would be used) appends
//! a 0xFF byte, which is not FNV-1a of the bytes; the `jump-consistent-hash` crate (0.1.0) adds
//! one to the key with a plain `+`, which overflows (a panic in debug builds) for some keys.
//! Never `std`'s `DefaultHasher`: its output may change between Rust releases.

/// FNV-1a's 64-bit offset basis: the hash of no bytes.
const FNV1A_64_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits, standard offset basis and prime.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a_64_extend(FNV1A_64_OFFSET_BASIS, bytes)
}

/// FNV-1a of `parts` one after another: the hash of their concatenation, without building it.
pub fn fnv1a_64_of_parts(parts: &[&[u8]]) -> u64 {
    parts.iter().fold(FNV1A_64_OFFSET_BASIS, |hash, part| {
        fnv1a_64_extend(hash, part)
    })
}

/// FNV-1a of the bytes already hashed into `hash` followed by `bytes`.
fn fnv1a_64_extend(hash: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(hash, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Lamping and Veach's jump consistent hash: the bucket in `0..buckets` for `key`.
/// `buckets` of 0 is treated as 1.
pub fn jump(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as u32
}

/// The index in `cluster.nodes` of the node that owns `host`.
pub fn owner_of_host(host: &str, nodes: usize) -> usize {
    jump(fnv1a_64(host.as_bytes()), nodes as u32) as usize
}

/// The index in the cache's peer list of the node that owns the plugin item
/// `(namespace, key)`: the hash of `namespace|key` (the protocol forbids `|` in either, so the
/// joined form names one item).
pub fn owner_of_item(namespace: &str, key: &str, nodes: usize) -> usize {
    let hash = fnv1a_64_of_parts(&[namespace.as_bytes(), b"|", key.as_bytes()]);
    jump(hash, nodes as u32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_vectors() {
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(
            fnv1a_64_extend(fnv1a_64(b"foo"), b"bar"),
            0x85944171f73967e8
        );
    }

    #[test]
    fn an_items_owner_is_the_jump_of_its_joined_name() {
        for (namespace, key) in [("plugins", "cpu-web-01"), ("", ""), ("ns", "ünï")] {
            let joined = format!("{namespace}|{key}");
            for nodes in 1..6 {
                let expected = jump(fnv1a_64(joined.as_bytes()), nodes as u32) as usize;
                assert_eq!(owner_of_item(namespace, key, nodes), expected);
            }
        }
    }

    #[test]
    fn jump_reference_vectors() {
        // From the reference implementations' test suites (Go's dgryski/go-jump).
        assert_eq!(jump(1, 1), 0);
        assert_eq!(jump(42, 57), 43);
        assert_eq!(jump(0xDEAD10CC, 1), 0);
        assert_eq!(jump(0xDEAD10CC, 666), 361);
        assert_eq!(jump(256, 1024), 520);
        // Keys where `key * C + 1` overflows: no panic, a bucket in range.
        assert!(jump(u64::MAX, 7) < 7);
    }

    #[test]
    fn pinned_owners_of_known_hosts() {
        // Fixed by the design: any build, and any outside router, must agree.
        let hosts = [
            "web-01",
            "db-02",
            "gw-03",
            "C:\\ host",
            "ünï",
            "mail",
            "router",
            "opsview",
            "host-1",
            "host-2",
        ];
        let owners: Vec<usize> = hosts.iter().map(|host| owner_of_host(host, 3)).collect();
        assert_eq!(owners, PINNED_OWNERS_OF_3);
    }

    /// Computed independently, by a Python transcription of the two published algorithms
    /// (docs/architecture.md, "Routing"), for 3 nodes.
    const PINNED_OWNERS_OF_3: [usize; 10] = [2, 2, 2, 2, 0, 1, 1, 1, 0, 1];

    #[test]
    fn moving_from_n_to_n_plus_one_nodes_moves_about_one_in_n_plus_one() {
        let hosts: Vec<String> = (0..10_000).map(|i| format!("host-{i}")).collect();
        let moved = hosts
            .iter()
            .filter(|host| owner_of_host(host, 4) != owner_of_host(host, 5))
            .count();
        // Expect 1/5 of hosts to move, all of them to the new node.
        assert!((1700..2300).contains(&moved), "{moved} moved");
        assert!(hosts
            .iter()
            .filter(|host| owner_of_host(host, 4) != owner_of_host(host, 5))
            .all(|host| owner_of_host(host, 5) == 4));
    }
}
